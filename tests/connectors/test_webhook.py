"""The webhook connector against a real receiver on loopback."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from policyd.connectors import ConnectorContext, ConnectorError, Target, create_connector
from policyd.connectors.webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConnector,
    create,
    sign,
    verify_signature,
)
from policyd.domain import UserType
from policyd.testing import check_connector_contract
from tests.connectors.webhook_server import SIGNING_KEY, WebhookServer
from tests.connectors.webhook_server import webhook_server as webhook_server  # fixture

TARGET = Target(
    "ada",
    "app:payroll",
    role="approver",
    email="ada@example.org",
    user_type=UserType.GUEST,
    display_name="Ada Lovelace",
)


def connector(server: WebhookServer, key: str = SIGNING_KEY, **settings: Any) -> WebhookConnector:
    settings = {"url": f"{server.url}/events", **settings}
    context = ConnectorContext("hooks", settings=settings, secrets={"signing_key": key})
    hook = create_connector("webhook", context)
    assert isinstance(hook, WebhookConnector)
    return hook


def test_grant_posts_an_event_the_receiver_verifies(webhook_server: WebhookServer):
    """grant() POSTs a signed access.granted event whose id matches its header."""
    connector(webhook_server).grant(TARGET, event_id="job-1")
    [delivery] = webhook_server.deliveries
    assert webhook_server.rejected == 0
    assert delivery.path == "/events"
    assert delivery.headers[EVENT_ID_HEADER.lower()] == "job-1"
    assert delivery.body == {
        "event": "access.granted",
        "id": "job-1",
        "timestamp": delivery.body["timestamp"],
        "user": {
            "id": "ada",
            "email": "ada@example.org",
            "display_name": "Ada Lovelace",
            "type": "guest",
        },
        "resource": "app:payroll",
        "role": "approver",
    }
    sent = datetime.fromisoformat(delivery.body["timestamp"])
    assert int(sent.timestamp()) == int(delivery.headers[TIMESTAMP_HEADER.lower()])


def test_revoke_posts_access_removed(webhook_server: WebhookServer):
    """revoke() POSTs access.removed for the same user, resource and role."""
    connector(webhook_server).revoke(TARGET)
    [delivery] = webhook_server.deliveries
    assert delivery.body["event"] == "access.removed"
    assert (delivery.body["user"]["id"], delivery.body["resource"]) == ("ada", "app:payroll")


def test_send_delivers_any_lifecycle_event(webhook_server: WebhookServer):
    """send() wraps the payload in the event envelope and reports it was sent."""
    sent = connector(webhook_server).send("request.created", {"request": {"id": "r1"}}, "ev-1")
    [delivery] = webhook_server.deliveries
    assert sent is True
    assert delivery.body["event"] == "request.created"
    assert delivery.body["id"] == "ev-1"
    assert delivery.body["request"] == {"id": "r1"}


def test_send_refuses_an_unknown_event(webhook_server: WebhookServer):
    """An event outside the documented list is a programming error, not a delivery."""
    with pytest.raises(ValueError, match="unknown event"):
        connector(webhook_server).send("access.granted.v2", {}, "ev-1")
    assert webhook_server.deliveries == []


def test_send_refuses_a_payload_that_overrides_the_envelope(webhook_server: WebhookServer):
    """A payload cannot replace the event name, id or timestamp."""
    with pytest.raises(ValueError, match="reserved"):
        connector(webhook_server).send("request.created", {"id": "other"}, "ev-1")


@pytest.mark.parametrize("event_id", ["", "two words", "line\nbreak", "x" * 201])
def test_send_refuses_an_event_id_unfit_for_a_header(webhook_server: WebhookServer, event_id: str):
    """Event ids must be printable ASCII without spaces, since they travel in a header."""
    with pytest.raises(ValueError, match="event id"):
        connector(webhook_server).send("request.created", {}, event_id)
    assert webhook_server.deliveries == []


def test_events_setting_filters_what_is_sent(webhook_server: WebhookServer):
    """Events left out of the `events` setting are not sent."""
    hook = connector(webhook_server, events=["access.removed"])
    hook.grant(TARGET)
    assert hook.send("request.approved", {}, "ev-1") is False
    hook.revoke(TARGET)
    assert [d.body["event"] for d in webhook_server.deliveries] == ["access.removed"]


def test_a_wrong_key_is_rejected_by_the_receiver(webhook_server: WebhookServer):
    """The receiver refuses a signature made with another key, and that is not retryable."""
    with pytest.raises(ConnectorError, match="HTTP 401") as caught:
        connector(webhook_server, key="not-the-key").grant(TARGET)
    assert caught.value.retryable is False
    assert webhook_server.rejected == 1
    assert webhook_server.deliveries == []


def test_verify_signature_accepts_a_genuine_delivery(clock):
    """A body signed with the key at `now` verifies."""
    timestamp = int(clock().timestamp())
    signature = sign(SIGNING_KEY, timestamp, b'{"event":"access.granted"}')
    assert verify_signature(
        SIGNING_KEY, str(timestamp), b'{"event":"access.granted"}', signature, now=clock()
    )


def test_verify_signature_rejects_a_tampered_body(clock):
    """Changing one byte of the body breaks the signature."""
    timestamp = int(clock().timestamp())
    signature = sign(SIGNING_KEY, timestamp, b'{"role":"member"}')
    assert not verify_signature(SIGNING_KEY, timestamp, b'{"role":"owner"}', signature, clock())


def test_verify_signature_rejects_a_changed_timestamp(clock):
    """The timestamp is signed too, so a replay cannot refresh it."""
    timestamp = int(clock().timestamp())
    signature = sign(SIGNING_KEY, timestamp - 600, b"{}")
    assert not verify_signature(SIGNING_KEY, timestamp, b"{}", signature, clock())


def test_verify_signature_rejects_an_old_timestamp(clock):
    """A genuine delivery older than the tolerance is refused as a possible replay."""
    old = int((clock() - timedelta(seconds=301)).timestamp())
    signature = sign(SIGNING_KEY, old, b"{}")
    assert not verify_signature(SIGNING_KEY, old, b"{}", signature, clock())
    assert verify_signature(SIGNING_KEY, old, b"{}", signature, clock(), tolerance=600)


def test_verify_signature_rejects_a_future_timestamp(clock):
    """Clock skew is tolerated both ways, but only up to the tolerance."""
    future = int((clock() + timedelta(seconds=301)).timestamp())
    assert not verify_signature(
        SIGNING_KEY, future, b"{}", sign(SIGNING_KEY, future, b"{}"), clock()
    )


@pytest.mark.parametrize("written", ["", "now", "+{0}", "{0}.0", "{0:_}", "-{0}"])
def test_verify_signature_rejects_a_timestamp_not_in_digits(clock, written: str):
    """Only plain digits count, even when another spelling has the signed value."""
    timestamp = int(clock().timestamp())
    signature = sign(SIGNING_KEY, timestamp, b"{}")
    assert not verify_signature(SIGNING_KEY, written.format(timestamp), b"{}", signature, clock())


def test_verify_signature_needs_an_aware_now(clock):
    """A naive `now` is a programming error, not a failed verification."""
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_signature(SIGNING_KEY, 0, b"{}", "v1=00", clock().replace(tzinfo=None))


def test_verify_signature_rejects_another_scheme(clock):
    """Only `v1=` signatures are understood."""
    timestamp = int(clock().timestamp())
    digest = sign(SIGNING_KEY, timestamp, b"{}").removeprefix("v1=")
    assert not verify_signature(SIGNING_KEY, timestamp, b"{}", f"v0={digest}", clock())


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_errors_are_retryable(webhook_server: WebhookServer, status: int):
    """5xx, 429 and 408 answers raise a retryable ConnectorError."""
    webhook_server.answer = status
    with pytest.raises(ConnectorError, match=f"HTTP {status}") as caught:
        connector(webhook_server).grant(TARGET)
    assert caught.value.retryable is True


@pytest.mark.parametrize("status", [400, 404, 410])
def test_client_errors_are_not_retryable(webhook_server: WebhookServer, status: int):
    """Other 4xx answers raise a ConnectorError that is not retryable."""
    webhook_server.answer = status
    with pytest.raises(ConnectorError, match=f"HTTP {status}") as caught:
        connector(webhook_server).grant(TARGET)
    assert caught.value.retryable is False


def test_a_timeout_is_retryable(webhook_server: WebhookServer):
    """A receiver slower than the timeout raises a retryable ConnectorError."""
    webhook_server.delay = 5
    with pytest.raises(ConnectorError, match=r"no answer within 0\.2s") as caught:
        connector(webhook_server, timeout=0.2).grant(TARGET)
    assert caught.value.retryable is True


def test_a_refused_connection_is_retryable():
    """A receiver that is down raises a retryable ConnectorError."""
    server = WebhookServer()
    server.start()
    server.stop()
    with pytest.raises(ConnectorError, match="ConnectError") as caught:
        connector(server).grant(TARGET)
    assert caught.value.retryable is True


def test_errors_do_not_reveal_the_query_string(webhook_server: WebhookServer):
    """A secret in the URL's query (`?code=`) stays out of error messages."""
    webhook_server.answer = 500
    with pytest.raises(ConnectorError) as caught:
        connector(webhook_server, url=f"{webhook_server.url}/events?code=s3cret").grant(TARGET)
    assert "s3cret" not in str(caught.value)
    assert "/events" in str(caught.value)


def test_a_retry_reuses_the_event_id_so_the_receiver_applies_it_once(
    webhook_server: WebhookServer,
):
    """Delivering the same event id twice reaches the receiver twice but counts once."""
    hook = connector(webhook_server)
    webhook_server.answer = 503
    with pytest.raises(ConnectorError):
        hook.grant(TARGET, event_id="job-7")
    webhook_server.answer = 200
    hook.grant(TARGET, event_id="job-7")
    hook.grant(TARGET, event_id="job-7")  # the answer was lost: at-least-once delivers again
    ids = [d.headers[EVENT_ID_HEADER.lower()] for d in webhook_server.deliveries]
    assert ids == ["job-7", "job-7"]
    assert list(webhook_server.events) == ["job-7"]


def test_each_call_without_an_event_id_is_a_new_event(webhook_server: WebhookServer):
    """Without an id from the caller every call gets a fresh one, so no event is lost."""
    hook = connector(webhook_server)
    hook.grant(TARGET)
    hook.revoke(TARGET)
    hook.grant(TARGET)
    assert len(webhook_server.events) == 3
    assert webhook_server.members["app:payroll"] == {"ada"}


def test_without_members_url_members_is_unknown(webhook_server: WebhookServer):
    """Without `members_url` members() is empty and the connector says not to reconcile."""
    hook = connector(webhook_server)
    hook.grant(TARGET)
    assert hook.members("app:payroll") == set()
    assert hook.reconcilable is False


def test_with_members_url_the_connector_keeps_the_contract(webhook_server: WebhookServer):
    """With `members_url` and `health_url` the connector passes the contract check."""
    hook = connector(
        webhook_server,
        members_url=f"{webhook_server.url}/members",
        health_url=f"{webhook_server.url}/health",
    )
    assert hook.reconcilable is True
    check_connector_contract(hook, TARGET)
    assert webhook_server.rejected == 0


def test_members_url_must_answer_a_list_of_ids(webhook_server: WebhookServer):
    """An answer that is not a JSON list of strings is a non-retryable error."""
    hook = connector(webhook_server, members_url=f"{webhook_server.url}/other")
    with pytest.raises(ConnectorError, match="JSON list") as caught:
        hook.members("app:payroll")
    assert caught.value.retryable is False


def test_health_checks_health_url(webhook_server: WebhookServer):
    """health() GETs `health_url`, signed, and fails retryably when it answers 5xx."""
    hook = connector(webhook_server, health_url=f"{webhook_server.url}/health")
    hook.health()
    assert [d.path for d in webhook_server.deliveries] == ["/health"]
    assert SIGNATURE_HEADER.lower() in webhook_server.deliveries[0].headers
    webhook_server.answer = 502
    with pytest.raises(ConnectorError) as caught:
        hook.health()
    assert caught.value.retryable is True


def test_health_without_health_url_sends_nothing(webhook_server: WebhookServer):
    """Without `health_url` health() is a no-op."""
    connector(webhook_server).health()
    assert webhook_server.deliveries == []


@pytest.mark.parametrize(
    ("settings", "secrets", "message"),
    [
        ({"url": "https://hooks.example.org"}, {}, "signing_key"),
        ({}, {"signing_key": "k"}, "'url'"),
        ({"url": "ftp://hooks.example.org"}, {"signing_key": "k"}, "'url'"),
        ({"url": "https://hooks.example.org", "timeout": 0}, {"signing_key": "k"}, "timeout"),
        ({"url": "https://hooks.example.org", "events": ["x"]}, {"signing_key": "k"}, "events"),
        ({"url": "https://hooks.example.org", "verbose": 1}, {"signing_key": "k"}, "verbose"),
        (
            {"url": "https://hooks.example.org", "members_url": "hooks"},
            {"signing_key": "k"},
            "members_url",
        ),
    ],
)
def test_bad_configuration_is_not_retryable(
    settings: dict[str, Any], secrets: dict[str, str], message: str
):
    """A missing key or a wrong setting fails creation with a non-retryable error."""
    with pytest.raises(ConnectorError, match=message) as caught:
        create(ConnectorContext("hooks", settings=settings, secrets=secrets))
    assert caught.value.retryable is False


def test_the_outbox_job_id_is_the_event_id(webhook_server: WebhookServer):
    """A target carrying the worker's job id is delivered under that id on every retry."""
    from dataclasses import replace

    hook = connector(webhook_server)
    hook.grant(replace(TARGET, operation_id="job-42"))
    hook.grant(replace(TARGET, operation_id="job-42"))
    assert list(webhook_server.events) == ["job-42"]
