"""Ending assignments: cancel their waiting grants and revoke what they granted, unless
another live assignment of the person grants it too; once their revokes are done, removed (the
usual end of a mass expiry, with one statement per batch)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from policyd.domain import AssignmentState, JobState, transition
from policyd.services.actor import Actor
from policyd.services.assignment_delivery import LIVE_STATES, assignment_view, settle_assignments
from policyd.services.audit import audit_many
from policyd.services.jobs import JobService
from policyd.services.notifications import notify_many
from policyd.store.models import Assignment, Job
from policyd.store.query import among, unindexed, update_many

REVOKE_ATTEMPTS = 1_000_000  # revocations are retried until they succeed


def end_assignments(
    session: Session,
    actor: Actor,
    assignments: Sequence[Assignment],
    action: str,
    *,
    now: datetime,
) -> None:
    """Start taking access away: expiring now, removed once every revoke job is done; a few
    statements in all however many assignments end (mass expiry)."""
    records = []
    for assignment in assignments:
        before = assignment_view(assignment)
        records.append(
            {
                "action": action,
                "object": ("assignment", assignment.id),
                "before": before,
                "after": {
                    **before,
                    "state": transition(assignment.state, AssignmentState.EXPIRING),
                },
                "version": assignment.version,
            }
        )
    expiring = AssignmentState.EXPIRING
    update_many(session, list(assignments), state=expiring, removed_at=now)
    audit_many(session, actor, now, records)
    _cancel_grants(session, assignments, action, now=now)
    revoking = _enqueue_revokes(session, assignments, now=now)
    # The others had nothing left to revoke: they are removed at once.
    rest = [assignment for assignment in assignments if assignment.id not in revoking]
    settle_assignments(session, rest, actor, now=now)


def _cancel_grants(
    session: Session, assignments: Sequence[Assignment], action: str, *, now: datetime
) -> None:
    """Grants of ending assignments still waiting in the outbox (say, backing off) are
    never run: one that ran after the revoke would leave access behind. A grant running
    now finishes first, as its revoke waits for it (JobService.claim)."""
    if not assignments:
        return
    session.execute(
        update(Job)
        .where(
            among(session, Job.assignment_id, [a.id for a in assignments]),
            Job.kind == "grant",
            Job.state == JobState.QUEUED,
        )
        .values(
            state=transition(JobState.QUEUED, JobState.FAILED),
            finished_at=now,
            last_error=f"canceled: {action}",
        ),
        execution_options={"synchronize_session": False},
    )


def _enqueue_revokes(
    session: Session, assignments: Sequence[Assignment], *, now: datetime
) -> set[str]:
    """Revoke exactly what each ending assignment granted, unless another live one of the
    person grants it too (reference counting).

    When several assignments of one person end together, the role they share is revoked
    once. Revocations retry until they succeed: access is never left behind.

    Returns:
        The ids of the assignments that got revoke jobs.
    """
    session.flush()  # the ending assignments are no longer live for the query below
    ids = [assignment.id for assignment in assignments]
    granted: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for assignment_id, connector, resource, role in session.execute(
        select(Job.assignment_id, Job.connector, Job.resource, Job.role).where(
            among(session, Job.assignment_id, ids), Job.kind == "grant"
        )
    ):
        granted[assignment_id].add((connector, resource, role))
    held = _granted_elsewhere(session, {assignment.subject_id for assignment in assignments})
    jobs = []
    for assignment in assignments:
        kept = held[assignment.subject_id]
        for connector, resource, role in sorted(granted[assignment.id] - kept):
            kept.add((connector, resource, role))
            jobs.append(
                {
                    "kind": "revoke",
                    "connector": connector,
                    "resource": resource,
                    "role": role,
                    "subject_id": assignment.subject_id,
                    "assignment_id": assignment.id,
                    "max_attempts": REVOKE_ATTEMPTS,
                }
            )
    JobService(session).enqueue_many(jobs, now=now)
    return {job["assignment_id"] for job in jobs}


def _granted_elsewhere(
    session: Session, subjects: set[str]
) -> dict[str, set[tuple[str, str, str]]]:
    """Per person, (connector, resource, role) that a live assignment of theirs grants."""
    held: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    rows = session.execute(
        select(Assignment.subject_id, Job.connector, Job.resource, Job.role)
        .join(Job, Job.assignment_id == Assignment.id)
        .where(
            among(session, Assignment.subject_id, subjects),
            Assignment.state.in_(LIVE_STATES),
            Job.kind == "grant",
            Job.state != JobState.FAILED,
        )
    )
    for subject_id, connector, resource, role in rows:
        held[subject_id].add((connector, resource, role))
    return held


EXPIRING, REMOVED = AssignmentState.EXPIRING, AssignmentState.REMOVED


def remove_revoked(
    session: Session, assignment_ids: Sequence[str], actor: Actor, *, now: datetime
) -> set[str]:
    """Move the expiring assignments of `assignment_ids` that have no revoke left to do to
    removed, audited and with the holder told, as AssignmentService.settle would; the caller
    holds their row locks and commits. Returns the ids moved."""
    if not assignment_ids:
        return set()
    transition(EXPIRING, REMOVED)  # the table allows it, as for each assignment in settle
    table = Assignment.__table__
    pending = exists().where(
        Job.assignment_id == table.c.id, Job.kind == "revoke", Job.state != JobState.DONE
    )
    # By their ids (the primary key): planned by statistics taken before the expiry, the
    # state's index would read every expiring assignment per batch (query.unindexed).
    expiring = unindexed(table.c.state) == EXPIRING
    rows = session.execute(
        update(table)
        .where(among(session, table.c.id, assignment_ids), expiring, ~pending)
        .values(state=REMOVED)
        .returning(
            table.c.id, table.c.subject_id, table.c.expires_at, table.c.version, table.c.rule
        )
    ).all()
    records: list[dict[str, Any]] = []
    for row in rows:
        before = {
            "state": EXPIRING,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "version": row.version,
            "rule": row.rule,
        }
        records.append(
            {
                "action": f"assignment.{REMOVED}",
                "object": ("assignment", row.id),
                "before": before,
                "after": {**before, "state": REMOVED},
                "version": row.version,
            }
        )
    audit_many(session, actor, now, records)
    notify_many(session, [("access_removed", row.id, row.subject_id) for row in rows], now=now)
    return {row.id for row in rows}
