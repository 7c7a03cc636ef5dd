"""Guests whose last access ended are disabled, then deleted, in the systems that granted it."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policyd.services.jobs import JobService
from policyd.store.models import Assignment, Job, User

LIVE = ("delivering", "active", "expiring", "failed")


class ExternalUsers(StrEnum):
    """What happens to a guest once nothing grants them access any more."""

    NONE = "none"
    DISABLE = "disable"
    DISABLE_THEN_DELETE = "disable_then_delete"


def sweep_external_users(
    session: Session, *, now: datetime, mode: ExternalUsers, delete_after: timedelta
) -> dict[str, int]:
    """Queue disable (and later delete) jobs for guests without live access; idempotent.

    Each connector that granted the guest something is asked; connectors that cannot
    disable or delete users skip the job. A guest who gets access again is left alone.
    """
    counts = {"disabled": 0, "deleted": 0}
    if mode is ExternalUsers.NONE:
        return counts
    live = select(Assignment.subject_id).where(Assignment.state.in_(LIVE))
    ended = session.execute(
        select(Assignment.subject_id, func.max(Assignment.removed_at))
        .join(User, User.id == Assignment.subject_id)
        .where(User.type == "guest", Assignment.subject_id.not_in(live))
        .group_by(Assignment.subject_id)
    ).all()
    jobs = JobService(session)
    for user_id, last_removed in ended:
        if last_removed is None:
            continue
        connectors = sorted(
            set(
                session.scalars(
                    select(Job.connector).where(Job.subject_id == user_id, Job.kind == "grant")
                )
            )
        )
        steps = [("disable_user", last_removed)]
        if mode is ExternalUsers.DISABLE_THEN_DELETE:
            steps.append(("delete_user", last_removed + delete_after))
        for kind, due in steps:
            if due > now or _queued_since(session, user_id, kind, last_removed):
                continue
            for connector in connectors:
                jobs.enqueue(kind, connector, "", "", user_id, assignment_id=None, now=now)
            counts["disabled" if kind == "disable_user" else "deleted"] += 1
    session.commit()
    return counts


def _queued_since(session: Session, user_id: str, kind: str, since: datetime) -> bool:
    return (
        session.scalar(
            select(Job.id).where(
                Job.subject_id == user_id, Job.kind == kind, Job.created_at >= since
            )
        )
        is not None
    )
