"""Directory users: create, replace, list, and the states of one who left."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from policyd.services.actor import Actor
from policyd.services.audit import audit
from policyd.services.auto_assign_queue import mark_dirty
from policyd.services.directory.base import DirectoryPart, check_id
from policyd.services.errors import InvalidError, NotFoundError
from policyd.services.listing import list_page
from policyd.store.models import Membership, User

USER_FIELDS = (
    "email",
    "display_name",
    "type",
    "manager_id",
    "organization_id",
    "department",
    "job_title",
    "employee_type",
    "attributes",
)


def user_defaults() -> dict[str, Any]:
    """The value of every field a new user is not given (fresh, so none is shared)."""
    return {**dict.fromkeys(USER_FIELDS), "type": "member", "attributes": {}}


ACTIVE_USER, DISABLED, DELETED = "active", "disabled", "deleted"  # User.state


def lock_user(session: Session, user_id: str, *, share: bool = False) -> str | None:
    """The user's state (None: no such row), with their row locked until the transaction
    ends: `share` for those who may run side by side (requests), else for update (leavers).

    SQLite locks the whole database at a transaction's first write instead, so there a
    write that changes nothing takes that lock first, and nothing read after it can go
    stale before the commit.
    """
    users = User.__table__
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.execute(update(users).where(users.c.id == user_id).values(state=users.c.state))
        return connection.execute(select(users.c.state).where(users.c.id == user_id)).scalar()
    query = select(User.state).where(User.id == user_id).with_for_update(read=share)
    return session.scalar(query)


def user_view(user: User) -> dict[str, Any]:
    return {"id": user.id, **{name: getattr(user, name) for name in USER_FIELDS}}


class Users(DirectoryPart):
    """The users part of DirectoryService."""

    def get_user(self, user_id: str, *, lock: bool = False) -> User:
        """A user in the directory (a deleted one's tombstone is not)."""
        user = self.session.get(User, user_id, with_for_update=lock or None)
        if user is None or user.state == DELETED:
            raise NotFoundError(f"no user {user_id!r}", field="id")
        return user

    def list_users(
        self, *, after: str | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[User], int | None]:
        """A page of the users in id order; with `after`, the page after that cursor."""
        query = select(User).where(User.state != DELETED).order_by(User.id)
        return list_page(self.session, query, after=after, offset=offset, limit=limit)

    def put_user(
        self,
        actor: Actor,
        user_id: str,
        data: dict[str, Any],
        *,
        now: datetime,
        keep_missing: bool = False,
        external_manager: bool = True,
    ) -> User:
        """Create or replace a user; audited with before and after.

        Args:
            keep_missing: fields absent from `data` keep an existing user's value (the API's
                PUT) instead of being reset (an import replaces the whole record).
            external_manager: False: a `manager_id` must name a user in the directory.

        Raises:
            InvalidError: a bad id, or a manager the directory lacks when it must have them.
        """
        check_id(user_id)
        manager = data.get("manager_id")
        boss = self.session.get(User, manager) if manager and not external_manager else None
        if manager and not external_manager and (boss is None or boss.state == DELETED):
            raise InvalidError(
                f"no user {manager!r} in the directory; send manager_external: true for "
                "a manager outside it",
                field="manager_id",
            )
        user = self.session.get(User, user_id)
        if user is not None and user.state == DELETED:
            # The id is used again: a new user, while the tombstone's history stays.
            user.state, user.left_at = ACTIVE_USER, None
            before = None
        else:
            before = user_view(user) if user else None
        if user is None:
            user = User(id=user_id)
            self.session.add(user)
        defaults = user_defaults()
        for name in USER_FIELDS:
            if name not in data and keep_missing and before is not None:
                continue
            setattr(user, name, data[name] if name in data else defaults[name])
        self.session.flush()
        mark_dirty(self.session, [user_id], now=now)  # auto-assignment looks at them again
        audit(
            self.session,
            actor,
            "directory.user_updated" if before else "directory.user_created",
            ("user", user_id),
            now=now,
            before=before,
            after=user_view(user),
        )
        return user

    def mark_left(
        self, actor: Actor, user: User, state: str, *, now: datetime, ended: dict[str, int]
    ) -> None:
        """Record that `user` left (`deleted` or `disabled`) once their access is being
        ended (`ended`: what was ended, for the audit record). A deleted user loses their
        memberships and stays as a tombstone: revokes still reach them and history keeps
        who held access. Use LeaverService, which ends the access first."""
        before = user_view(user)
        if state == DELETED:
            self.session.execute(delete(Membership).where(Membership.user_id == user.id))
        user.state, user.left_at = state, now
        mark_dirty(self.session, [user.id], now=now)
        audit(
            self.session,
            actor,
            f"directory.user_{state}",
            ("user", user.id),
            now=now,
            before=before,
            after={**user_view(user), "state": state, **ended},
        )

    def enable_user(self, actor: Actor, user: User, *, now: datetime) -> None:
        """A disabled user may request access again (what they had is not given back)."""
        user.state, user.left_at = ACTIVE_USER, None
        mark_dirty(self.session, [user.id], now=now)
        audit(
            self.session,
            actor,
            "directory.user_enabled",
            ("user", user.id),
            now=now,
            after=user_view(user),
        )
