"""The built-in `directory` connector: membership of policyd's own directory groups.

Unlike other connectors it works on policyd's own database. It does so through a narrow
port, `MembershipStore`, which the composition root fills with the directory service's
implementation (policyd.services.memberships), so connectors never import services.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from policyd.connectors.base import Connector, ConnectorContext, ConnectorError, Target

GROUP_PREFIX = "group:"  # a resource of this connector: group:<id of a directory group>


def group_of(resource: str) -> str | None:
    """The directory group a resource of this connector names; None if it names none."""
    if not resource.startswith(GROUP_PREFIX):
        return None
    return resource.removeprefix(GROUP_PREFIX) or None


class MembershipConflictError(Exception):
    """Another writer changed the same group meanwhile; nothing of the call was kept."""


class MembershipStore(Protocol):
    """What the directory connector needs of policyd's directory; every call is its own
    transaction."""

    def known_users(self, user_ids: Iterable[str]) -> set[str]: ...

    def add(self, group_id: str, user_ids: list[str]) -> None:
        """Raises MembershipConflictError when another writer got there first."""

    def add_one(self, group_id: str, user_id: str) -> bool:
        """False when the directory has no such user."""

    def remove(self, memberships: dict[str, list[str]]) -> None: ...

    def members(self, group_id: str) -> set[str]: ...

    def members_of(self, group_ids: Sequence[str]) -> dict[str, set[str]]: ...

    def ping(self) -> None: ...


class DirectoryConnector:
    """Grants `group:<id>` by adding the user to that group; creates the group if needed."""

    def __init__(self, context: ConnectorContext):
        if context.memberships is None:
            raise ConnectorError("the directory connector needs the directory", retryable=False)
        self.name = context.name
        self._store: MembershipStore = context.memberships

    def _group(self, resource: str) -> str:
        group = group_of(resource)
        if group is None:
            raise ConnectorError(
                f"directory resources are group:<id>, not {resource!r}", retryable=False
            )
        return group

    def grant(self, target: Target) -> None:
        if not self._store.add_one(self._group(target.resource), target.user_id):
            raise ConnectorError(f"no user {target.user_id!r} in the directory", retryable=False)

    def revoke(self, target: Target) -> None:
        self._store.remove({self._group(target.resource): [target.user_id]})

    def grant_many(self, targets: Sequence[Target]) -> list[ConnectorError | None]:
        """Grant many targets with a few statements per group."""
        errors, groups = self._by_group(targets)
        known = self._store.known_users({target.user_id for target in targets})
        for index, target in enumerate(targets):
            if errors[index] is None and target.user_id not in known:
                message = f"no user {target.user_id!r} in the directory"
                errors[index] = ConnectorError(message, retryable=False)
        for group_id, indexes in groups.items():
            users = [targets[i].user_id for i in indexes if errors[i] is None]
            try:
                self._store.add(group_id, users)
            except MembershipConflictError:
                # Another worker added some of them (or the group) meanwhile: one by one.
                for i in indexes:
                    if errors[i] is None:
                        errors[i] = self._try(self.grant, targets[i])
        return errors

    def revoke_many(self, targets: Sequence[Target]) -> list[ConnectorError | None]:
        """Revoke many targets with one statement per group."""
        errors, groups = self._by_group(targets)
        self._store.remove(
            {
                group_id: [targets[i].user_id for i in indexes if errors[i] is None]
                for group_id, indexes in groups.items()
            }
        )
        return errors

    def _by_group(
        self, targets: Sequence[Target]
    ) -> tuple[list[ConnectorError | None], dict[str, list[int]]]:
        errors: list[ConnectorError | None] = [None] * len(targets)
        groups: dict[str, list[int]] = defaultdict(list)
        for index, target in enumerate(targets):
            try:
                groups[self._group(target.resource)].append(index)
            except ConnectorError as err:
                errors[index] = err
        return errors, groups

    @staticmethod
    def _try(method: Callable[[Target], None], target: Target) -> ConnectorError | None:
        try:
            method(target)
        except ConnectorError as err:
            return err
        return None

    def members(self, resource: str) -> set[str]:
        return self._store.members(self._group(resource))

    def members_of(self, resources: Sequence[str]) -> dict[str, set[str]]:
        groups = {r.removeprefix("group:"): r for r in resources if r.startswith("group:")}
        groups.pop("", None)  # `members` names what is wrong with it
        found = self._store.members_of(list(groups))
        return {resource: found.get(group, set()) for group, resource in groups.items()}

    def health(self) -> None:
        self._store.ping()


def create(context: ConnectorContext) -> Connector:
    return DirectoryConnector(context)


def check_resource(resource: str, role: str) -> str | None:
    """Publish-time check: directory resources are group:<id>."""
    if not resource.startswith("group:") or not resource.removeprefix("group:"):
        return f"directory resources are group:<id>, not {resource!r}"
    return None


create.check_resource = check_resource  # type: ignore[attr-defined]
