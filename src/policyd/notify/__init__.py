"""Notifiers: how policyd tells people about requests, approvals and expiring access."""

from policyd.notify.base import Notification, Notifier, NotifierContext, NotifyError
from policyd.notify.registry import create_notifier, notifier_types

__all__ = [
    "Notification",
    "Notifier",
    "NotifierContext",
    "NotifyError",
    "create_notifier",
    "notifier_types",
]
