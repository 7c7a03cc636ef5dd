"""The `webhook` connector: signed JSON events POSTed to a URL, like Entra's custom extensions."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from policyd.connectors.base import Connector, ConnectorContext, ConnectorError, Target
from policyd.plugins import unknown_settings

EVENTS = (
    "request.created",
    "request.approved",
    "access.granted",
    "access.removed",
    "access.expiring",
)
SETTINGS = frozenset({"url", "timeout", "events", "members_url", "health_url"})
DEFAULT_TIMEOUT = 10.0
DEFAULT_TOLERANCE = 300
TIMESTAMP_HEADER = "X-Policyd-Timestamp"
SIGNATURE_HEADER = "X-Policyd-Signature"
EVENT_ID_HEADER = "X-Policyd-Event-Id"
SIGNATURE_VERSION = "v1"
ENVELOPE = ("event", "id", "timestamp")
UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
EVENT_ID = re.compile(r"[!-~]{1,200}")  # printable ASCII without spaces: it goes in a header
# Besides 5xx: the receiver asks us to come back later (RFC 9110 §15.5.9, RFC 6585 §4).
RETRYABLE_STATUSES = frozenset({408, 429})

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def sign(key: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The `X-Policyd-Signature` value: `v1=` and the hex HMAC-SHA256 of `{timestamp}.{body}`."""
    digest = hmac.new(_bytes(key), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify_signature(
    key: str | bytes,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    now: datetime,
    tolerance: int = DEFAULT_TOLERANCE,
) -> bool:
    """Whether a delivery is authentic and fresh, for receivers.

    Args:
        key: the shared signing key.
        timestamp: the `X-Policyd-Timestamp` header (unix seconds).
        body: the raw request body, exactly as received.
        signature: the `X-Policyd-Signature` header.
        now: the receiver's current time (UTC, aware).
        tolerance: seconds the timestamp may differ from `now` either way; older
            deliveries are refused so a captured request cannot be replayed later.

    Raises:
        ValueError: `now` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    sent = str(timestamp).strip()
    if not UNIX_SECONDS.fullmatch(sent) or abs(now.timestamp() - int(sent)) > tolerance:
        return False
    body = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(key, sent, body).encode(), signature.strip().encode())


class WebhookSender:
    """Signs and POSTs JSON to one URL; raises ConnectorError saying whether to retry.

    Safe to share between threads: each call opens its own short-lived HTTP client, so
    nothing needs closing.
    """

    def __init__(
        self,
        url: str,
        signing_key: str | bytes,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock = _utcnow,
        label: str = "webhook",
    ):
        self.url = url
        self.timeout = timeout
        self._key = _bytes(signing_key)
        self._clock = clock
        self.label = label
        # Loading the CA bundle takes tens of milliseconds: once, not per delivery.
        self._tls = httpx.create_ssl_context()

    def post(self, event: str, payload: Mapping[str, Any], event_id: str) -> None:
        """POST `{"event", "id", "timestamp", **payload}` to the URL, signed.

        Raises:
            ValueError: `event_id` is not printable ASCII, or `payload` uses a key of the
                envelope.
            ConnectorError: the receiver did not answer 2xx.
        """
        if not EVENT_ID.fullmatch(event_id):
            raise ValueError(f"event id {event_id!r} is not 1-200 printable ASCII characters")
        clashing = sorted(set(payload) & set(ENVELOPE))
        if clashing:
            raise ValueError(f"payload keys {clashing} are reserved for the envelope")
        now = self._clock()
        body = {"event": event, "id": event_id, "timestamp": _iso(now), **payload}
        self.request("POST", self.url, body, now=now, headers={EVENT_ID_HEADER: event_id})

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        now: datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one signed request (an empty body is signed as b""); the 2xx response."""
        now = now or self._clock()
        content = b"" if body is None else _json(body)
        timestamp = int(now.timestamp())
        signed = {
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._key, timestamp, content),
            **(headers or {}),
        }
        if body is not None:
            signed["Content-Type"] = "application/json"
        what = f"{method} {_redact(url)}"
        try:
            # No redirects: a signed event must reach the configured URL or fail loudly.
            with httpx.Client(
                timeout=self.timeout, verify=self._tls, follow_redirects=False
            ) as client:
                response = client.request(method, url, content=content or None, headers=signed)
        except httpx.TimeoutException as err:
            raise self.error(f"{what}: no answer within {self.timeout:g}s", True) from err
        except httpx.TransportError as err:
            raise self.error(f"{what}: {type(err).__name__}: {err}", True) from err
        status = response.status_code
        if not response.is_success:
            retryable = status >= 500 or status in RETRYABLE_STATUSES
            detail = response.text[:200].strip()
            raise self.error(f"{what}: HTTP {status}{': ' + detail if detail else ''}", retryable)
        return response

    def error(self, message: str, retryable: bool) -> ConnectorError:
        """A ConnectorError whose message names this sender's owner."""
        return ConnectorError(f"{self.label}: {message}", retryable=retryable)


class WebhookConnector:
    """Tells an outside system about access changes; it keeps no state of its own.

    Without a `members_url` nobody can say who holds a webhook resource, so `members`
    returns an empty set and `reconcilable` is False: reconciliation must skip it.
    """

    def __init__(
        self,
        name: str,
        sender: WebhookSender,
        *,
        events: frozenset[str] = frozenset(EVENTS),
        members_url: str | None = None,
        health_url: str | None = None,
    ):
        self.name = name
        self.events = events
        self.members_url = members_url
        self.health_url = health_url
        self.reconcilable = members_url is not None
        self._sender = sender

    def grant(self, target: Target, *, event_id: str | None = None) -> None:
        """Send `access.granted`; pass the job's `event_id` so retries carry the same id."""
        event_id = event_id or target.operation_id or str(uuid.uuid4())
        self.send("access.granted", _target_payload(target), event_id)

    def revoke(self, target: Target, *, event_id: str | None = None) -> None:
        """Send `access.removed`; pass the job's `event_id` so retries carry the same id."""
        event_id = event_id or target.operation_id or str(uuid.uuid4())
        self.send("access.removed", _target_payload(target), event_id)

    def send(self, event: str, payload: Mapping[str, Any], event_id: str) -> bool:
        """Deliver one lifecycle event unless the `events` setting filters it out.

        Deliveries are at least once: a retry must reuse `event_id` so the receiver can
        drop the duplicate.

        Returns:
            Whether the event was sent (False when filtered out).

        Raises:
            ValueError: `event` is not one of EVENTS, or `payload` uses an envelope key.
            ConnectorError: the receiver did not take it.
        """
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        if event not in self.events:
            return False
        self._sender.post(event, payload, event_id)
        return True

    def members(self, resource: str) -> set[str]:
        """The user ids `members_url` lists for `resource`; empty without one."""
        if self.members_url is None:
            return set()
        listed = self._sender.request("POST", self.members_url, {"resource": resource})
        try:
            members = listed.json()
        except ValueError:
            members = None
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise self._sender.error(
                f"POST {_redact(self.members_url)}: expected a JSON list of user ids", False
            )
        return set(members)

    def health(self) -> None:
        if self.health_url is not None:
            self._sender.request("GET", self.health_url)


def _target_payload(target: Target) -> dict[str, Any]:
    user = {
        "id": target.user_id,
        "email": target.email,
        "display_name": target.display_name,
        "type": target.user_type.value,
    }
    return {"user": user, "resource": target.resource, "role": target.role}


def _bytes(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _redact(url: str) -> str:
    """The URL without credentials or query, which may carry a secret (`?code=`)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _config_error(owner: str, message: str) -> ConnectorError:
    return ConnectorError(f"{owner}: {message}", retryable=False)


def _url(owner: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise _config_error(owner, f"setting {key!r} must be an http:// or https:// URL")
    return value


def _optional_url(owner: str, settings: Mapping[str, Any], key: str) -> str | None:
    return None if settings.get(key) is None else _url(owner, key, settings[key])


def sender_from(
    owner: str, settings: Mapping[str, Any], secrets: Mapping[str, str]
) -> WebhookSender:
    """A sender for the `url` and `timeout` settings and the `signing_key` secret.

    Args:
        owner: names the instance in messages, e.g. "webhook notifier 'chat'".

    Raises:
        ConnectorError: a setting or the secret is missing or wrong (not retryable).
    """
    url = _url(owner, "url", settings.get("url"))
    timeout = settings.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise _config_error(owner, "setting 'timeout' must be a positive number of seconds")
    key = secrets.get("signing_key")
    if not key:
        raise _config_error(owner, "secret 'signing_key' is required: every delivery is signed")
    return WebhookSender(url, key, timeout=float(timeout), label=owner)


def create(context: ConnectorContext) -> Connector:
    """A `webhook` connector configured by `context`.

    Raises:
        ConnectorError: the settings are wrong (not retryable).
    """
    owner = f"webhook connector {context.name!r}"
    settings = context.settings
    if problem := unknown_settings(settings, SETTINGS):
        raise _config_error(owner, problem)
    events = settings.get("events", list(EVENTS))
    if not isinstance(events, list) or not set(events) <= set(EVENTS):
        raise _config_error(owner, f"setting 'events' must list some of {', '.join(EVENTS)}")
    return WebhookConnector(
        context.name,
        sender_from(owner, settings, context.secrets),
        events=frozenset(events),
        members_url=_optional_url(owner, settings, "members_url"),
        health_url=_optional_url(owner, settings, "health_url"),
    )


create.takes_events = True  # type: ignore[attr-defined]  # send() delivers lifecycle events
