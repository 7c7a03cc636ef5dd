"""The `smtp` notifier: plain-text e-mail through an SMTP relay, STARTTLS by default."""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from policyd.notify.base import Notification, Notifier, NotifierContext, NotifyError
from policyd.plugins import unknown_settings

SETTINGS = frozenset({"host", "port", "starttls", "from", "username", "timeout", "ca_file"})
DEFAULT_TIMEOUT = 30.0
SUBMISSION_PORT = 587  # RFC 6409, with STARTTLS
RELAY_PORT = 25
NOT_IN_MESSAGE_ID = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SmtpNotifier:
    """Sends each notification as one message to all its recipients.

    A new connection per message: notifications are few, and a relay closes idle
    connections anyway. Safe to share between threads.
    """

    def __init__(
        self,
        name: str,
        host: str,
        sender: str,
        *,
        port: int | None = None,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ca_file: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ):
        self.name = name
        self.host = host
        self.port = port or (SUBMISSION_PORT if starttls else RELAY_PORT)
        self.sender = sender
        self.username = username
        self.timeout = timeout
        self._password = password
        self._clock = clock
        self._tls = ssl.create_default_context(cafile=ca_file) if starttls else None
        self._domain = parseaddr(sender)[1].rpartition("@")[2] or "policyd.invalid"

    def compose(self, notification: Notification) -> EmailMessage:
        """The message for `notification`.

        Raises:
            NotifyError: a recipient or the subject would inject headers (not retryable).
        """
        message = EmailMessage()
        try:
            message["From"] = self.sender
            message["To"] = ", ".join(notification.to)
            message["Subject"] = " ".join(notification.subject.split())
            message["Date"] = format_datetime(self._clock())
            # The notification's id, so a retried notification is recognisably the same mail.
            message["Message-ID"] = (
                f"<{NOT_IN_MESSAGE_ID.sub('-', notification.id)}@{self._domain}>"
            )
            message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
            message["X-Policyd-Kind"] = notification.kind
        except ValueError as err:  # CR or LF in a header value
            raise self._error(f"cannot compose {notification.kind}: {err}", False) from err
        message.set_content(notification.text)
        if notification.html is not None:  # multipart/alternative: the text, then the HTML
            message.add_alternative(notification.html, subtype="html")
        return message

    def send(self, notification: Notification) -> None:
        """Send `notification`.

        Raises:
            NotifyError: retryable when the server is unreachable, slow, or answers 4xx;
                not when it refuses the login, the sender or every recipient for good.
        """
        if not notification.to:
            raise self._error(f"{notification.kind} has no recipients", False)
        message = self.compose(notification)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self._tls is not None:
                    smtp.starttls(context=self._tls)
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(message, to_addrs=list(notification.to))
        except (smtplib.SMTPException, OSError) as err:  # SMTPException is an OSError too
            raise self._error(_describe(err), _retryable(err)) from err
        if refused:
            # The others have it: retrying would send it to them twice.
            raise self._error(f"refused recipients {_refusals(refused)}", False)

    def _error(self, message: str, retryable: bool) -> NotifyError:
        where = f"{self.host}:{self.port}"
        return NotifyError(f"smtp notifier {self.name!r} ({where}): {message}", retryable=retryable)


def _retryable(err: OSError) -> bool:
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in err.recipients.values())
    if isinstance(err, smtplib.SMTPConnectError | smtplib.SMTPServerDisconnected):
        return True
    if isinstance(err, smtplib.SMTPResponseException):
        return 400 <= err.smtp_code < 500  # 4xx is "try again later" (RFC 5321 §4.2.1)
    # Left: no STARTTLS or AUTH, an untrusted certificate (configuration, not retryable);
    # refused, unreachable, reset, timed out (retryable).
    return not isinstance(err, smtplib.SMTPException | ssl.SSLCertVerificationError)


def _describe(err: OSError) -> str:
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return f"refused every recipient {_refusals(err.recipients)}"
    if isinstance(err, smtplib.SMTPResponseException):
        text = err.smtp_error.decode(errors="replace") if isinstance(err.smtp_error, bytes) else ""
        return f"{type(err).__name__}: {err.smtp_code} {text}".rstrip()
    return f"{type(err).__name__}: {err}"


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{to} ({code})" for to, (code, _) in sorted(refused.items()))


def _wrong(owner: str, message: str) -> NotifyError:
    return NotifyError(f"{owner}: {message}", retryable=False)


def _text(owner: str, settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _wrong(owner, f"setting {key!r} must be a non-empty string")
    return value


def _optional_text(owner: str, settings: Mapping[str, Any], key: str) -> str | None:
    return None if settings.get(key) is None else _text(owner, settings, key)


def _port(owner: str, settings: Mapping[str, Any]) -> int | None:
    port = settings.get("port")
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _wrong(owner, "setting 'port' must be a port number")
    return port


def create(context: NotifierContext) -> Notifier:
    """An `smtp` notifier configured by `context` (see docs/notifications.md).

    Raises:
        NotifyError: the settings are wrong (not retryable).
    """
    owner = f"smtp notifier {context.name!r}"
    settings = context.settings
    if problem := unknown_settings(settings, SETTINGS):
        raise _wrong(owner, problem)
    starttls = settings.get("starttls", True)
    if not isinstance(starttls, bool):
        raise _wrong(owner, "setting 'starttls' must be true or false")
    timeout = settings.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise _wrong(owner, "setting 'timeout' must be a positive number of seconds")
    sender = _text(owner, settings, "from")
    if "@" not in parseaddr(sender)[1]:
        raise _wrong(owner, "setting 'from' must be an e-mail address")
    username = _optional_text(owner, settings, "username")
    password = context.secrets.get("password")
    if username is not None and not password:
        raise _wrong(owner, "setting 'username' needs the secret 'password'")
    if username is not None and not starttls:
        raise _wrong(owner, "a login needs starttls: true, or the password crosses in clear")
    try:
        return SmtpNotifier(
            context.name,
            _text(owner, settings, "host"),
            sender,
            port=_port(owner, settings),
            starttls=starttls,
            username=username,
            password=password,
            timeout=float(timeout),
            ca_file=_optional_text(owner, settings, "ca_file"),
        )
    except OSError as err:  # ca_file missing or not PEM (ssl.SSLError is an OSError)
        raise _wrong(owner, f"setting 'ca_file': {err}") from err
