"""Leavers: a deleted or disabled user loses every access, open request and pending approval."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor
from policyd.services.assignments import LIVE_STATES, AssignmentService
from policyd.services.directory import (
    ACTIVE_USER,
    DELETED,
    DISABLED,
    DirectoryService,
    lock_user,
)
from policyd.services.errors import ConflictError
from policyd.services.requests import RequestService
from policyd.store.models import ApiToken, Assignment, User


class LeaverService:
    """Deleting or disabling a user, as Entra does for a deleted user: their assignments are
    removed through the connectors (the outbox, with reference counting), their open
    requests canceled and they stop being an approver. Everything is audited, and their
    history (requests, decisions, assignments, audit) is kept."""

    def __init__(
        self,
        session: Session,
        runtime: PolicyRuntime | None = None,
        listeners: frozenset[str] = frozenset(),
    ):
        self.session = session
        self.runtime = runtime
        self.listeners = listeners

    def delete_user(self, actor: Actor, user_id: str, *, now: datetime) -> dict[str, int]:
        """Delete a user: end what they hold, then keep a tombstone; commits.

        Returns:
            What was ended: assignments, and requests canceled, reassigned, escalated, denied.
        """
        user = DirectoryService(self.session).get_user(user_id, lock=True)
        ended = self.leave(actor, user, DELETED, now=now)
        self.session.commit()
        return ended

    def disable_user(self, actor: Actor, user_id: str, *, now: datetime) -> dict[str, int]:
        """Disable a user: the same as deleting, but the user stays in the directory; commits.

        Raises:
            ConflictError: the user is disabled already.
        """
        user = DirectoryService(self.session).get_user(user_id, lock=True)
        if user.state != ACTIVE_USER:
            raise ConflictError(f"user {user_id!r} is {user.state} already", field="id")
        ended = self.leave(actor, user, DISABLED, now=now)
        self.session.commit()
        return ended

    def enable_user(self, actor: Actor, user_id: str, *, now: datetime) -> None:
        """Let a disabled user request access again (what they had is not given back); commits.

        Raises:
            ConflictError: the user is not disabled.
        """
        directory = DirectoryService(self.session)
        user = directory.get_user(user_id, lock=True)
        if user.state != DISABLED:
            raise ConflictError(f"user {user_id!r} is {user.state}, not disabled", field="id")
        directory.enable_user(actor, user, now=now)
        self.session.commit()

    def leave(self, actor: Actor, user: User, state: str, *, now: datetime) -> dict[str, int]:
        """Everything `delete_user` and `disable_user` do but the commit (directory imports
        apply many changes in one transaction)."""
        lock_user(self.session, user.id)  # a request being filed for them finishes first
        # Requests first: an approval being recorded right now finishes (its lock) before
        # they are read, so the assignment it creates is among those ended below.
        requests = RequestService(self.session, self.runtime, self.listeners)
        counts = requests.withdraw(actor, user.id, now=now)
        live = self.session.scalars(
            select(Assignment)
            .where(Assignment.subject_id == user.id, Assignment.state.in_(LIVE_STATES))
            .order_by(Assignment.id)
            .with_for_update()
        ).all()
        AssignmentService(self.session, self.runtime).end_many(
            actor, live, "assignment.user_left", now=now
        )
        # Their API tokens stop working (within POLICYD_TOKEN_CACHE_SECONDS).
        tokens = self.session.execute(
            update(ApiToken)
            .where(ApiToken.principal == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now),
            execution_options={"synchronize_session": False},
        ).rowcount
        ended = {
            "assignments_ended": len(live),
            **{f"requests_{k}": v for k, v in counts.items()},
            "tokens_revoked": tokens,
        }
        DirectoryService(self.session).mark_left(actor, user, state, now=now, ended=ended)
        return ended
