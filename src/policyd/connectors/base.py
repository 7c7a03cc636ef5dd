"""The contract every connector keeps: idempotent grant, revoke and member listing."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from policyd.domain import UserType


@dataclass(frozen=True)
class Target:
    """One person and one resource role a connector grants or revokes."""

    user_id: str
    resource: str  # as written in the rule file, e.g. "group:Readers" or a DN
    role: str = "member"
    email: str | None = None
    user_type: UserType = UserType.MEMBER
    display_name: str | None = None
    # The same on every retry of one grant or revoke (the outbox job id), for de-duplication.
    operation_id: str | None = None


class ConnectorError(Exception):
    """A connector could not do its job.

    `retryable` says whether trying again later may succeed (a server down, a timeout) or
    not (a resource that does not exist); the worker backs off on the first and fails the
    job at once on the second.
    """

    def __init__(self, message: str, *, retryable: bool = True):
        self.retryable = retryable
        super().__init__(message)


@dataclass(frozen=True)
class ConnectorContext:
    """What policyd hands a connector factory besides its own settings."""

    name: str  # the instance name rule files use, e.g. "ldap-corp"
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)  # resolved from the environment
    # policyd's own directory, for the built-in `directory` connector only (a
    # policyd.connectors.directory.MembershipStore, filled in by the composition root)
    memberships: Any = None


@runtime_checkable
class Connector(Protocol):
    """Every method is idempotent: granting twice, or revoking what is absent, is no error."""

    name: str

    def grant(self, target: Target) -> None: ...

    def revoke(self, target: Target) -> None: ...

    def members(self, resource: str) -> set[str]:
        """The policyd user ids that hold `resource` right now (for reconciliation)."""
        ...

    def health(self) -> None:
        """Return if the connector can work; raise ConnectorError otherwise."""
        ...


@runtime_checkable
class BulkConnector(Connector, Protocol):
    """Optional: a connector that can grant or revoke many targets in one call (the directory
    does it with a few statements). The worker then claims its jobs hundreds at a time, which
    is what makes mass expiry fast.

    Both return one entry per target, in order: None when done, else the ConnectorError for
    that target alone. Raising fails every target of the call. Idempotent, like the rest.
    """

    def grant_many(self, targets: Sequence[Target]) -> Sequence[ConnectorError | None]: ...

    def revoke_many(self, targets: Sequence[Target]) -> Sequence[ConnectorError | None]: ...


ConnectorFactory = Callable[[ConnectorContext], Connector]
