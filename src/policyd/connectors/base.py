"""The contract every connector keeps (idempotent grant, revoke, member listing) and the optional
abilities a connector may declare, checked once when it is loaded."""

from __future__ import annotations

import inspect
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


@runtime_checkable
class EventReceiver(Protocol):
    """Optional: takes lifecycle events (webhooks). Its factory says so with a true
    `takes_events` attribute, so that listeners are known without creating instances."""

    def send(self, event: str, payload: Mapping[str, Any], event_id: str) -> bool:
        """Deliver one event (a retry reuses `event_id`); False when filtered out."""
        ...


@runtime_checkable
class UserDisabler(Protocol):
    """Optional: can disable a guest's account in the system it grants in."""

    def disable_user(self, user_id: str) -> None: ...


@runtime_checkable
class UserDeleter(Protocol):
    """Optional: can delete a guest's account in the system it grants in."""

    def delete_user(self, user_id: str) -> None: ...


@runtime_checkable
class Closable(Protocol):
    """Optional: holds connections (LDAP pools, HTTP clients) to close at shutdown."""

    def close(self) -> None: ...


@runtime_checkable
class MaybeReconcilable(Protocol):
    """Optional: says whether `members` can be trusted; False makes reconciliation skip it."""

    reconcilable: bool


@runtime_checkable
class EventTakingFactory(Protocol):
    """Optional, on a factory: a true `takes_events` makes its instances event listeners."""

    takes_events: bool


@runtime_checkable
class ResourceChecker(Protocol):
    """Optional, on a factory: why a resource and role could never work (a message), or None;
    publishing a bundle reports it at the resource's line."""

    def check_resource(self, resource: str, role: str) -> str | None: ...


class AbilityError(ConnectorError):
    """A connector declares an optional ability with the wrong shape (never retryable)."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


# Instance abilities: the Abilities field, its protocol, and the methods that declare it.
_METHODS: dict[str, tuple[type, tuple[str, ...]]] = {
    "bulk": (BulkConnector, ("grant_many", "revoke_many")),
    "receives_events": (EventReceiver, ("send",)),
    "disables_users": (UserDisabler, ("disable_user",)),
    "deletes_users": (UserDeleter, ("delete_user",)),
    "closes": (Closable, ("close",)),
}


@dataclass(frozen=True)
class Abilities:
    """The optional abilities of one connector instance, checked once when it is created."""

    bulk: bool = False  # grant_many and revoke_many (BulkConnector)
    receives_events: bool = False  # send (EventReceiver)
    disables_users: bool = False  # disable_user (UserDisabler)
    deletes_users: bool = False  # delete_user (UserDeleter)
    closes: bool = False  # close (Closable)
    reconcilable: bool = True  # members can be trusted (MaybeReconcilable)

    @classmethod
    def of(cls, connector: object, name: str) -> Abilities:
        """What `connector` (the instance called `name`) declares.

        A method of an ability counts as declaring it; then every method of the ability
        must be there and take what policyd passes it.

        Raises:
            AbilityError: naming the connector and the method that is missing or wrong.
        """
        found: dict[str, bool] = {}
        for ability, (protocol, methods) in _METHODS.items():
            declared = [method for method in methods if hasattr(connector, method)]
            if declared:
                for method in methods:
                    if method not in declared:
                        raise AbilityError(f"connector {name!r} has {declared[0]} but not {method}")
                    check_method(connector, method, protocol, f"connector {name!r}")
            found[ability] = bool(declared)
        reconcilable = True
        if isinstance(connector, MaybeReconcilable):
            reconcilable = connector.reconcilable
            if not isinstance(reconcilable, bool):
                raise AbilityError(f"connector {name!r}: reconcilable must be true or false")
        return cls(reconcilable=reconcilable, **found)


def check_method(owner: object, method: str, protocol: type, who: str) -> None:
    """Raise AbilityError unless `owner.method` can be called as `protocol` declares it
    (with the same positional arguments)."""
    wanted = list(inspect.signature(getattr(protocol, method)).parameters)[1:]  # no self
    found = getattr(owner, method)
    expected = f"{method}({', '.join(wanted)})"
    if not callable(found):
        raise AbilityError(f"{who}: {method} is not a method; expected {expected}")
    try:
        signature = inspect.signature(found)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return
    try:
        signature.bind(*wanted)
    except TypeError:
        raise AbilityError(f"{who}: {method}{signature} cannot be called as {expected}") from None


@runtime_checkable
class ListingConnector(Connector, Protocol):
    """Optional: a connector that can list the holders of many resources in one call.
    Reconciliation then asks it a batch of resources at a time instead of one call each
    (the directory answers a thousand groups with one query)."""

    def members_of(self, resources: Sequence[str]) -> dict[str, set[str]]:
        """The holders of each resource it could list; a resource left out is asked alone
        with `members`, which says what is wrong with it."""
        ...


ConnectorFactory = Callable[[ConnectorContext], Connector]
