"""The `webhook` notifier: each notification as a signed `notification` event."""

from __future__ import annotations

from typing import Any

from policyd.connectors.base import ConnectorError
from policyd.connectors.webhook import WebhookSender, sender_from
from policyd.notify.base import Notification, Notifier, NotifierContext, NotifyError
from policyd.plugins import unknown_settings

EVENT = "notification"
SETTINGS = frozenset({"url", "timeout"})


class WebhookNotifier:
    """POSTs `{"event": "notification", "id", "timestamp", "kind", "to", "subject", "text"}`
    (and `html` when the message has an HTML part).

    Signed and retried exactly like the webhook connector's events; `id` is the
    notification's, so a retried notification carries the same `X-Policyd-Event-Id`.
    """

    def __init__(self, name: str, sender: WebhookSender):
        self.name = name
        self._sender = sender

    def send(self, notification: Notification) -> None:
        payload: dict[str, Any] = {
            "kind": notification.kind,
            "to": list(notification.to),
            "subject": notification.subject,
            "text": notification.text,
        }
        if notification.html is not None:
            payload["html"] = notification.html
        try:
            self._sender.post(EVENT, payload, notification.id)
        except ConnectorError as err:
            raise NotifyError(str(err), retryable=err.retryable) from err


def create(context: NotifierContext) -> Notifier:
    """A `webhook` notifier: settings `url`, `timeout`; secret `signing_key`.

    Raises:
        NotifyError: the settings are wrong (not retryable).
    """
    owner = f"webhook notifier {context.name!r}"
    if problem := unknown_settings(context.settings, SETTINGS):
        raise NotifyError(f"{owner}: {problem}", retryable=False)
    try:
        sender = sender_from(owner, context.settings, context.secrets)
    except ConnectorError as err:
        raise NotifyError(str(err), retryable=False) from err
    return WebhookNotifier(context.name, sender)
