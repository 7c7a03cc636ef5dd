"""Delivering assignments: one grant job per resource in the outbox, and settling an
assignment and its request from what their jobs have done."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import AssignmentState, JobState, RequestState, transition
from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor
from policyd.services.audit import audit_many
from policyd.services.jobs import JobService
from policyd.services.notifications import notify_many
from policyd.store.models import AccessRequest, Assignment, Job
from policyd.store.query import among, update_many

ACTIVE = AssignmentState.ACTIVE
# access granted or being granted
LIVE_STATES = (AssignmentState.DELIVERING, ACTIVE, AssignmentState.FAILED)
# Assignments whose delivery is not settled yet; job states of work finished, or not yet.
_UNSETTLED = (AssignmentState.DELIVERING, AssignmentState.FAILED)
_DONE, _UNFINISHED = {JobState.DONE}, {JobState.QUEUED, JobState.RUNNING}


def _delivery_outcome(grants: set[str]) -> tuple[AssignmentState, RequestState] | None:
    """What an assignment being delivered, and its request, become from the states of its
    grant jobs; None while some of them are still to run."""
    if grants <= _DONE:
        return ACTIVE, RequestState.DELIVERED
    if JobState.FAILED in grants and not grants & _UNFINISHED:
        partly = JobState.DONE in grants
        return AssignmentState.FAILED, (
            RequestState.PARTIALLY_DELIVERED if partly else RequestState.FAILED
        )
    return None


def assignment_view(assignment: Assignment) -> dict[str, Any]:
    return {
        "state": assignment.state,
        "expires_at": assignment.expires_at.isoformat() if assignment.expires_at else None,
        "version": assignment.version,
        "rule": assignment.rule,
    }


def enqueue_grants(
    session: Session, runtime: PolicyRuntime, assignment: Assignment, *, now: datetime
) -> None:
    """One outbox job per resource of the package, in the assignment's transaction."""
    policy = runtime.active
    package = policy.bundle.packages.get(assignment.package) if policy else None
    jobs = JobService(session)
    for resource in package.resources if package else ():
        jobs.enqueue(
            "grant",
            resource.connector,
            resource.resource,
            resource.role,
            assignment.subject_id,
            assignment_id=assignment.id,
            now=now,
        )
    session.flush()


def settle_assignments(
    session: Session, assignments: Sequence[Assignment], actor: Actor, *, now: datetime
) -> None:
    """Move the assignments and their requests on from what their jobs have done so far."""
    if not assignments:
        return
    session.flush()
    jobs = _job_states(session, assignments)
    delivering = [a.request_id for a in assignments if a.state in _UNSETTLED]
    requests = {}
    if delivering:
        query = select(AccessRequest).where(among(session, AccessRequest.id, delivering))
        requests = {request.id: request for request in session.scalars(query)}
    records: list[dict[str, Any]] = []
    notes: list[tuple[str, str, str]] = []
    moved: dict[str, list[Assignment]] = defaultdict(list)  # by new state
    decided: dict[str, list[AccessRequest]] = defaultdict(list)
    for assignment in assignments:
        states = jobs[assignment.id]
        if assignment.state in _UNSETTLED:
            if (outcome := _delivery_outcome(states["grant"])) is None:
                continue
            state, request_state = outcome
            records += changed(assignment, state)
            moved[state].append(assignment)
            request = requests.get(assignment.request_id)
            if request is not None and request.state != request_state:
                transition(request.state, request_state)
                kind = (
                    "access_granted"
                    if request_state is RequestState.DELIVERED
                    else "request_decided"
                )
                notes.append((kind, request.id, assignment.subject_id))
                records.append(
                    {
                        "action": f"request.{request_state}",
                        "object": ("request", request.id),
                        "before": {"state": request.state},
                        "after": {"state": request_state},
                        "version": request.version,
                    }
                )
                decided[request_state].append(request)
        elif assignment.state == AssignmentState.EXPIRING and states["revoke"] <= _DONE:
            records += changed(assignment, AssignmentState.REMOVED)
            moved[AssignmentState.REMOVED].append(assignment)
            notes.append(("access_removed", assignment.id, assignment.subject_id))
    for state, moving in moved.items():
        update_many(session, moving, state=state)
    for state, deciding in decided.items():
        update_many(session, deciding, state=state, updated_at=now)
    audit_many(session, actor, now, records)
    notify_many(session, notes, now=now)


def _job_states(
    session: Session, assignments: Sequence[Assignment]
) -> dict[str, dict[str, set[str]]]:
    """Per assignment, the states of its grant jobs and of its revoke jobs."""
    jobs: dict[str, dict[str, set[str]]] = defaultdict(lambda: {"grant": set(), "revoke": set()})
    for assignment_id, kind, state in session.execute(
        select(Job.assignment_id, Job.kind, Job.state).where(
            among(session, Job.assignment_id, [a.id for a in assignments])
        )
    ):
        if kind in ("grant", "revoke"):
            jobs[assignment_id][kind].add(state)
    return jobs


def changed(assignment: Assignment, state: AssignmentState) -> list[dict[str, Any]]:
    """The audit record of an assignment's move to `state`, if that is a change.

    Raises:
        IllegalTransitionError: the transition table does not allow the move.
    """
    if assignment.state == state:
        return []
    transition(assignment.state, state)
    before = assignment_view(assignment)
    return [
        {
            "action": f"assignment.{state}",
            "object": ("assignment", assignment.id),
            "before": before,
            "after": {**before, "state": state},
            "version": assignment.version,
        }
    ]
