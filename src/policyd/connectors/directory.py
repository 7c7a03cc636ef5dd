"""The built-in `directory` connector: membership of policyd's own directory groups.

Unlike other connectors it works on policyd's own database, so it uses the directory service.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from policyd.connectors.base import Connector, ConnectorContext, ConnectorError, Target
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.store.models import Group, Membership, User

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
