"""Group memberships of policyd's own directory as the `directory` connector writes them: each
call is one transaction, idempotent under concurrent workers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from policyd.connectors.directory import MembershipConflictError
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.store.models import Group, Membership, User
from policyd.store.query import among

ACTOR = Actor("connector:directory", Role.ADMIN)


class DirectoryMemberships:
    """The `directory` connector's store (policyd.connectors.directory.MembershipStore)."""

    def __init__(self, sessions: Callable[[], Session]):
        self._sessions = sessions

    def known_users(self, user_ids: Iterable[str]) -> set[str]:
        """The ids among `user_ids` that the directory holds."""
        with self._sessions() as session:
            query = select(User.id).where(among(session, User.id, set(user_ids)))
            return set(session.scalars(query))

    def add(self, group_id: str, user_ids: list[str]) -> None:
        """Make the users members of the group, creating the group if needed.

        Raises:
            MembershipConflictError: another worker added one of them (or the group)
            meanwhile; nothing of this call is kept, and one user at a time (`add_one`)
            settles it.
        """
        now = datetime.now(UTC)
        with self._sessions() as session:
            directory = DirectoryService(session)
            try:
                if session.get(Group, group_id) is None:
                    directory.put_group(ACTOR, group_id, group_id, now=now)
                directory.add_members(ACTOR, group_id, user_ids, now=now)
                session.commit()
            except IntegrityError:
                session.rollback()
                raise MembershipConflictError(group_id) from None

    def add_one(self, group_id: str, user_id: str) -> bool:
        """Make the user a member; False when the directory has no such user. A group or
        membership made meanwhile by another worker is no error (granting is idempotent)."""
        now = datetime.now(UTC)
        with self._sessions() as session:
            if session.get(User, user_id) is None:
                return False
            directory = DirectoryService(session)
            if session.get(Group, group_id) is None:
                try:
                    directory.put_group(ACTOR, group_id, group_id, now=now)
                    session.commit()
                except IntegrityError:
                    session.rollback()  # another worker created it meanwhile
            try:
                directory.add_member(ACTOR, group_id, user_id, now=now)
                session.commit()
            except IntegrityError:
                session.rollback()  # granted meanwhile by another worker: idempotent
        return True

    def remove(self, memberships: dict[str, list[str]]) -> None:
        """End each group's listed memberships, all in one transaction."""
        now = datetime.now(UTC)
        with self._sessions() as session:
            directory = DirectoryService(session)
            for group_id, user_ids in memberships.items():
                directory.remove_members(ACTOR, group_id, user_ids, now=now)
            session.commit()

    def members(self, group_id: str) -> set[str]:
        with self._sessions() as session:
            query = select(Membership.user_id).where(Membership.group_id == group_id)
            return set(session.scalars(query))

    def members_of(self, group_ids: Sequence[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {group_id: set() for group_id in group_ids}
        with self._sessions() as session:
            query = select(Membership.group_id, Membership.user_id).where(
                among(session, Membership.group_id, group_ids)
            )
            # Plain rows of the connection, fetched at once (not row by row): reconcile asks
            # for a thousand groups at a time.
            for group_id, user_id in session.connection().execute(query).all():
                found[group_id].add(user_id)
        return found

    def ping(self) -> None:
        with self._sessions() as session:
            session.execute(select(1))
