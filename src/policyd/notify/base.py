"""The contract every notifier keeps: deliver one message, saying whether to retry on failure."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Notification:
    """One message to people: an access request to approve, an expiry warning.

    `id` is stable for the life of the object, so sending it again (a retry) lets the
    receiving side drop the duplicate.
    """

    to: Sequence[str]
    subject: str
    text: str
    kind: str  # a stable slug, e.g. "request.approval-needed", for filters and templates
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    html: str | None = None  # the same message as HTML, for the channels that show it

    def __post_init__(self) -> None:
        object.__setattr__(self, "to", tuple(self.to))  # frozen means no shared mutable list


class NotifyError(Exception):
    """A notifier could not deliver; `retryable` as for ConnectorError."""

    def __init__(self, message: str, *, retryable: bool = True):
        self.retryable = retryable
        super().__init__(message)


@dataclass(frozen=True)
class NotifierContext:
    """What policyd hands a notifier factory: its instance name, settings and secrets."""

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)  # resolved from the environment


@runtime_checkable
class Notifier(Protocol):
    name: str

    def send(self, notification: Notification) -> None:
        """Deliver `notification` or raise NotifyError."""
        ...


NotifierFactory = Callable[[NotifierContext], Notifier]
