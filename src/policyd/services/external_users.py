"""Guests whose last access ended are disabled, then deleted, in the systems that granted it."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Subquery

from policyd.domain import AssignmentState
from policyd.periodic import TaskContext, periodic_task
from policyd.services.jobs import JobService
from policyd.store.models import Assignment, Job, User
from policyd.store.query import among

LIVE = (
    AssignmentState.DELIVERING,
    AssignmentState.ACTIVE,
    AssignmentState.EXPIRING,
    AssignmentState.FAILED,
)


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
    disable or delete users skip the job. A guest who gets access again is left alone. The
    guests due are found with one query per step, however many guests have ever ended.
    """
    counts = {"disabled": 0, "deleted": 0}
    if mode is ExternalUsers.NONE:
        return counts
    ended = _ended_guests()
    steps = [("disable_user", timedelta(0), "disabled")]
    if mode is ExternalUsers.DISABLE_THEN_DELETE:
        steps.append(("delete_user", delete_after, "deleted"))
    jobs = JobService(session)
    for kind, delay, counted in steps:
        due = _due(session, ended, kind, now - delay)
        if due:
            counts[counted] += _queue(session, jobs, kind, due, now)
    session.commit()
    return counts


def _ended_guests() -> Subquery:
    """Guests without live access, each with when their last assignment was removed."""
    live = select(Assignment.subject_id).where(Assignment.state.in_(LIVE))
    return (
        select(
            Assignment.subject_id.label("user_id"),
            func.max(Assignment.removed_at).label("last_removed"),
        )
        .join(User, User.id == Assignment.subject_id)
        .where(User.type == "guest", Assignment.subject_id.not_in(live))
        .group_by(Assignment.subject_id)
        .subquery()
    )


def _due(session: Session, ended: Subquery, kind: str, cutoff: datetime) -> list[str]:
    """The guests whose access ended by `cutoff` and who have no `kind` job queued since."""
    queued = (
        select(Job.id)
        .where(
            Job.subject_id == ended.c.user_id,
            Job.kind == kind,
            Job.created_at >= ended.c.last_removed,
        )
        .exists()
    )
    return list(
        session.scalars(
            select(ended.c.user_id).where(
                ended.c.last_removed.is_not(None),
                ended.c.last_removed <= cutoff,
                ~queued,
            )
        )
    )


def _queue(session: Session, jobs: JobService, kind: str, due: list[str], now: datetime) -> int:
    """Queue a `kind` job at every connector that granted each guest something; how many
    guests got one (a guest no connector ever granted anything has nothing to disable)."""
    granted = session.execute(
        select(Job.subject_id, Job.connector)
        .where(among(session, Job.subject_id, due), Job.kind == "grant")
        .distinct()
        .order_by(Job.subject_id, Job.connector)
    ).all()
    jobs.enqueue_many(
        (
            {
                "kind": kind,
                "connector": connector,
                "resource": "",
                "role": "",
                "subject_id": user_id,
                "assignment_id": None,
            }
            for user_id, connector in granted
        ),
        now=now,
    )
    return len({user_id for user_id, _ in granted})


@periodic_task("external-users.clean-up")
def clean_up_external_users(context: TaskContext, now: datetime) -> dict[str, int]:
    """Queue disable (then delete) jobs for guests whose last access ended."""
    with context.sessions() as session:
        return sweep_external_users(
            session,
            now=now,
            mode=ExternalUsers(context.external_users),
            delete_after=context.delete_after,
        )
