"""Ending assignments: cancel their waiting grants and revoke what they granted, unless
another live assignment of the person grants it too; once their revokes are done, removed (the
usual end of a mass expiry, with one statement per batch).

A revoke goes through the outbox (a job a worker runs, retried until it succeeds), except one
from a group of policyd's own directory when the caller names its connectors (`in_directory`,
the worker's expiry): that membership lives in the same database, so it ends in the very
transaction that ends the assignment, which is then removed at once. Nothing is left to
retry, and no moment exists where the assignment has ended but the membership is still there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from policyd.connectors.directory import group_of
from policyd.domain import AssignmentState, JobState, transition
from policyd.services.actor import Actor
from policyd.services.assignment_delivery import LIVE_STATES, assignment_view
from policyd.services.audit import audit_many
from policyd.services.directory import DirectoryService
from policyd.services.jobs import JobService
from policyd.services.memberships import ACTOR as DIRECTORY_ACTOR
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
    in_directory: frozenset[str] = frozenset(),
) -> None:
    """Start taking access away: expiring now, removed once every revoke job is done; a few
    statements in all however many assignments end (mass expiry). Grants through the
    connector instances of `in_directory` (of type `directory`) are revoked here.

    An assignment left with nothing to revoke (what it granted is still granted by another,
    or was a directory group revoked here) is removed at once: its row is written once, with
    its final state, and the trail still shows both steps (ending, then removed).
    """
    expiring, removed = AssignmentState.EXPIRING, AssignmentState.REMOVED
    records, views = [], {}
    for assignment in assignments:
        before = views[assignment.id] = assignment_view(assignment)
        records.append(
            {
                "action": action,
                "object": ("assignment", assignment.id),
                "before": before,
                "after": {**before, "state": transition(assignment.state, expiring)},
                "version": assignment.version,
            }
        )
    audit_many(session, actor, now, records)
    _cancel_grants(session, assignments, action, now=now)
    revoking = _enqueue_revokes(session, assignments, now=now, in_directory=in_directory)
    update_many(
        session, [a for a in assignments if a.id in revoking], state=expiring, removed_at=now
    )
    done = [assignment for assignment in assignments if assignment.id not in revoking]
    if not done:
        return
    transition(expiring, removed)
    update_many(session, done, state=removed, removed_at=now)
    audit_many(
        session,
        actor,
        now,
        [
            {
                "action": f"assignment.{removed}",
                "object": ("assignment", assignment.id),
                "before": {**views[assignment.id], "state": expiring},
                "after": {**views[assignment.id], "state": removed},
                "version": assignment.version,
            }
            for assignment in done
        ],
    )
    notify_many(session, [("access_removed", a.id, a.subject_id) for a in done], now=now)


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
    session: Session,
    assignments: Sequence[Assignment],
    *,
    now: datetime,
    in_directory: frozenset[str] = frozenset(),
) -> set[str]:
    """Revoke exactly what each ending assignment granted, unless another live one of the
    person grants it too (reference counting).

    When several assignments of one person end together, the role they share is revoked
    once; if one of them has that grant still running in a worker, the revoke is that
    assignment's, as JobService.claim makes a revoke wait for its own assignment's running
    grant. Revocations retry until they succeed: access is never left behind. A group of
    policyd's directory granted through a connector of `in_directory` loses the member here
    instead, unless such a grant is running.

    Returns:
        The ids of the assignments that got revoke jobs.
    """
    session.flush()
    ids = [assignment.id for assignment in assignments]
    granted, running = _grants_of(session, ids)
    subjects = {assignment.subject_id for assignment in assignments}
    held = _granted_elsewhere(session, subjects, set(ids))
    jobs = []
    members: dict[str, set[str]] = defaultdict(set)  # directory group -> users to remove
    for assignment in assignments:
        kept = held[assignment.subject_id]
        for connector, resource, role in sorted(granted[assignment.id] - kept):
            kept.add((connector, resource, role))
            waits = running.get((assignment.subject_id, connector, resource, role))
            group = group_of(resource) if connector in in_directory else None
            if group and waits is None:
                members[group].add(assignment.subject_id)
                continue
            jobs.append(
                {
                    "kind": "revoke",
                    "connector": connector,
                    "resource": resource,
                    "role": role,
                    "subject_id": assignment.subject_id,
                    "assignment_id": waits or assignment.id,
                    "max_attempts": REVOKE_ATTEMPTS,
                }
            )
    directory = DirectoryService(session)
    for group, users in sorted(members.items()):
        directory.remove_members(DIRECTORY_ACTOR, group, users, now=now)
    JobService(session).enqueue_many(jobs, now=now)
    return {job["assignment_id"] for job in jobs}


def _grants_of(
    session: Session, ids: list[str]
) -> tuple[dict[str, set[tuple[str, str, str]]], dict[tuple[str, str, str, str], str]]:
    """What each assignment of `ids` granted ((connector, resource, role) by assignment), and
    (person, connector, resource, role) -> the one of them whose grant of it a worker is
    running now: the revoke is that assignment's, so that it waits for the grant."""
    granted: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    running: dict[tuple[str, str, str, str], str] = {}
    for assignment_id, subject_id, connector, resource, role, state in session.execute(
        select(
            Job.assignment_id, Job.subject_id, Job.connector, Job.resource, Job.role, Job.state
        ).where(among(session, Job.assignment_id, ids), Job.kind == "grant")
    ):
        granted[assignment_id].add((connector, resource, role))
        if state == JobState.RUNNING:
            running[(subject_id, connector, resource, role)] = assignment_id
    return granted, running


def _granted_elsewhere(
    session: Session, subjects: set[str], ending: set[str]
) -> dict[str, set[tuple[str, str, str]]]:
    """Per person, (connector, resource, role) that a live assignment of theirs grants, the
    assignments of `ending` (still live in the database, ending now) left out."""
    held: dict[str, set[tuple[str, str, str]]] = defaultdict(set)
    rows = session.execute(
        select(Assignment.id, Assignment.subject_id, Job.connector, Job.resource, Job.role)
        .join(Job, Job.assignment_id == Assignment.id)
        .where(
            among(session, Assignment.subject_id, subjects),
            Assignment.state.in_(LIVE_STATES),
            Job.kind == "grant",
            Job.state != JobState.FAILED,
        )
    )
    for assignment_id, subject_id, connector, resource, role in rows:
        if assignment_id not in ending:
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
