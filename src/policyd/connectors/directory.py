"""The built-in `directory` connector: membership of policyd's own directory groups.

Unlike other connectors it works on policyd's own database, so it uses the directory service.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from policyd.connectors.base import Connector, ConnectorContext, ConnectorError, Target
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.store.models import Group, Membership, User
from policyd.store.query import among

ACTOR = Actor("connector:directory", Role.ADMIN)


class DirectoryConnector:
    """Grants `group:<id>` by adding the user to that group; creates the group if needed."""

    def __init__(self, context: ConnectorContext):
        if context.sessions is None:
            raise ConnectorError("the directory connector needs database sessions", retryable=False)
        self.name = context.name
        self._sessions = context.sessions

    def _group(self, resource: str) -> str:
        if not resource.startswith("group:") or not resource.removeprefix("group:"):
            raise ConnectorError(
                f"directory resources are group:<id>, not {resource!r}", retryable=False
            )
        return resource.removeprefix("group:")

    def grant(self, target: Target) -> None:
        group_id = self._group(target.resource)
        now = datetime.now(UTC)
        with self._sessions() as session:
            directory = DirectoryService(session)
            if session.get(User, target.user_id) is None:
                message = f"no user {target.user_id!r} in the directory"
                raise ConnectorError(message, retryable=False)
            if session.get(Group, group_id) is None:
                try:
                    directory.put_group(ACTOR, group_id, group_id, now=now)
                    session.commit()
                except IntegrityError:
                    session.rollback()  # another worker created it meanwhile
            try:
                directory.add_member(ACTOR, group_id, target.user_id, now=now)
                session.commit()
            except IntegrityError:
                session.rollback()  # granted meanwhile by another worker: idempotent

    def revoke(self, target: Target) -> None:
        group_id = self._group(target.resource)
        with self._sessions() as session:
            DirectoryService(session).remove_member(
                ACTOR, group_id, target.user_id, now=datetime.now(UTC)
            )
            session.commit()

    def grant_many(self, targets: Sequence[Target]) -> list[ConnectorError | None]:
        """Grant many targets with a few statements per group."""
        errors, groups = self._by_group(targets)
        with self._sessions() as session:
            known = set(
                session.scalars(
                    select(User.id).where(
                        among(session, User.id, {target.user_id for target in targets})
                    )
                )
            )
        for index, target in enumerate(targets):
            if errors[index] is None and target.user_id not in known:
                message = f"no user {target.user_id!r} in the directory"
                errors[index] = ConnectorError(message, retryable=False)
        now = datetime.now(UTC)
        for group_id, indexes in groups.items():
            users = [targets[i].user_id for i in indexes if errors[i] is None]
            try:
                with self._sessions() as session:
                    directory = DirectoryService(session)
                    if session.get(Group, group_id) is None:
                        directory.put_group(ACTOR, group_id, group_id, now=now)
                    directory.add_members(ACTOR, group_id, users, now=now)
                    session.commit()
            except IntegrityError:
                # Another worker added some of them (or the group) meanwhile: one by one.
                for i in indexes:
                    if errors[i] is None:
                        errors[i] = self._try(self.grant, targets[i])
        return errors

    def revoke_many(self, targets: Sequence[Target]) -> list[ConnectorError | None]:
        """Revoke many targets with one statement per group."""
        errors, groups = self._by_group(targets)
        now = datetime.now(UTC)
        with self._sessions() as session:
            directory = DirectoryService(session)
            for group_id, indexes in groups.items():
                users = [targets[i].user_id for i in indexes if errors[i] is None]
                directory.remove_members(ACTOR, group_id, users, now=now)
            session.commit()
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
        group_id = self._group(resource)
        with self._sessions() as session:
            query = select(Membership.user_id).where(Membership.group_id == group_id)
            return set(session.scalars(query))

    def health(self) -> None:
        with self._sessions() as session:
            session.execute(select(1))


def create(context: ConnectorContext) -> Connector:
    return DirectoryConnector(context)


def check_resource(resource: str, role: str) -> str | None:
    """Publish-time check: directory resources are group:<id>."""
    if not resource.startswith("group:") or not resource.removeprefix("group:"):
        return f"directory resources are group:<id>, not {resource!r}"
    return None


create.check_resource = check_resource  # type: ignore[attr-defined]
