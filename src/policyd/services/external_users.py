"""Guests whose last access ended are disabled, then deleted, in the systems that granted it."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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
    live = select(Assignment.subject_id).where(Assignment.state.in_(LIVE))
    ended = (
        select(
            Assignment.subject_id.label("user_id"),
            func.max(Assignment.removed_at).label("last_removed"),
        )
        .join(User, User.id == Assignment.subject_id)
        .where(User.type == "guest", Assignment.subject_id.not_in(live))
        .group_by(Assignment.subject_id)
        .subquery()
    )
    steps = [("disable_user", timedelta(0), "disabled")]
    if mode is ExternalUsers.DISABLE_THEN_DELETE:
        steps.append(("delete_user", delete_after, "deleted"))
    jobs = JobService(session)
    for kind, delay, counted in steps:
        # Queued already since the guest's access last ended: nothing to do.
        queued = (
            select(Job.id)
            .where(
                Job.subject_id == ended.c.user_id,
                Job.kind == kind,
                Job.created_at >= ended.c.last_removed,
            )
            .exists()
        )
        due = list(
            session.scalars(
                select(ended.c.user_id).where(
                    ended.c.last_removed.is_not(None),
                    ended.c.last_removed <= now - delay,
                    ~queued,
                )
            )
        )
        if not due:
            continue
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
        # A guest no connector ever granted anything has nothing to disable anywhere.
        counts[counted] += len({user_id for user_id, _ in granted})
    session.commit()
    return counts


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
