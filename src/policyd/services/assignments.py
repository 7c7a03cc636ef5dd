"""Assignments: access a subject holds through a package, delivered and removed via the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.rules import PolicyRuntime
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.audit import audit
from policyd.services.directory import ACTIVE_STATES
from policyd.services.errors import ConflictError, ForbiddenError, NotFoundError
from policyd.services.jobs import JobService
from policyd.services.notifications import notify
from policyd.store.models import AccessRequest, Assignment, Job
from policyd.store.query import page

ACTIVE = "active"
LIVE_STATES = ("delivering", ACTIVE, "failed")  # access granted or being granted
REVOKE_ATTEMPTS = 1_000_000  # revocations are retried until they succeed


def assignment_view(assignment: Assignment) -> dict[str, Any]:
    return {
        "state": assignment.state,
        "expires_at": assignment.expires_at.isoformat() if assignment.expires_at else None,
        "version": assignment.version,
        "rule": assignment.rule,
    }


class AssignmentService:
    def __init__(self, session: Session, runtime: PolicyRuntime):
        self.session = session
        self.runtime = runtime

    def create(self, actor: Actor, request: AccessRequest, *, now: datetime) -> Assignment:
        """Grant approved access (the caller commits)."""
        assignment = Assignment(
            subject_id=request.subject_id,
            package=request.package,
            state="delivering",
            request_id=request.id,
            decision_id=request.decision_id,
            version=request.version,
            rule=request.rule,
            starts_at=now,
            expires_at=request.expires_at,
        )
        self.session.add(assignment)
        self.session.flush()
        audit(
            self.session,
            actor,
            "assignment.created",
            ("assignment", assignment.id),
            now=now,
            after=assignment_view(assignment),
            version=assignment.version,
        )
        self._enqueue_grants(assignment, now=now)
        self.settle(assignment, actor, now=now)
        return assignment

    def prolong(self, actor: Actor, request: AccessRequest, *, now: datetime) -> Assignment:
        """Apply an approved extension request to the assignment it extends."""
        assignment = self.session.get(
            Assignment, request.extends_assignment_id, with_for_update=True
        )
        if assignment is None or assignment.state != ACTIVE:
            raise ConflictError("the assignment to extend is no longer active")
        before = assignment_view(assignment)
        assignment.expires_at = request.expires_at
        assignment.version, assignment.rule = request.version, request.rule
        assignment.decision_id = request.decision_id
        audit(
            self.session,
            actor,
            "assignment.extended",
            ("assignment", assignment.id),
            now=now,
            before=before,
            after=assignment_view(assignment),
            version=request.version,
        )
        return assignment

    def _enqueue_grants(self, assignment: Assignment, *, now: datetime) -> None:
        """One outbox job per resource of the package, in the assignment's transaction."""
        policy = self.runtime.active
        package = policy.bundle.packages.get(assignment.package) if policy else None
        jobs = JobService(self.session)
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
        self.session.flush()

    def _enqueue_revokes(self, assignment: Assignment, *, now: datetime) -> None:
        """Revoke exactly what this assignment granted, unless another live one grants it too.

        Revocations retry until they succeed: access is never left behind.
        """
        jobs = JobService(self.session)
        granted = {
            (job.connector, job.resource, job.role)
            for job in jobs.for_assignment(assignment.id)
            if job.kind == "grant"
        }
        still = self._granted_elsewhere(assignment)
        for connector, resource, role in sorted(granted - still):
            job = jobs.enqueue(
                "revoke",
                connector,
                resource,
                role,
                assignment.subject_id,
                assignment_id=assignment.id,
                now=now,
            )
            job.max_attempts = REVOKE_ATTEMPTS
        self.session.flush()

    def _granted_elsewhere(self, ending: Assignment) -> set[tuple[str, str, str]]:
        """(connector, resource, role) that another live assignment of the person grants."""
        others = select(Assignment.id).where(
            Assignment.subject_id == ending.subject_id,
            Assignment.state.in_(LIVE_STATES),
            Assignment.id != ending.id,
        )
        rows = self.session.execute(
            select(Job.connector, Job.resource, Job.role).where(
                Job.assignment_id.in_(others), Job.kind == "grant", Job.state != "failed"
            )
        )
        return {tuple(row) for row in rows}

    def settle(self, assignment: Assignment, actor: Actor, *, now: datetime) -> None:
        """Move the assignment and its request on from what their jobs have done so far."""
        jobs = JobService(self.session).for_assignment(assignment.id)
        grants = [job for job in jobs if job.kind == "grant"]
        revokes = [job for job in jobs if job.kind == "revoke"]
        before = assignment_view(assignment)
        request = self.session.get(AccessRequest, assignment.request_id)
        if assignment.state in ("delivering", "failed"):
            states = {job.state for job in grants}
            if states <= {"done"}:
                assignment.state, request_state = ACTIVE, "delivered"
            elif "failed" in states and not states & {"queued", "running"}:
                assignment.state = "failed"
                request_state = "partially_delivered" if "done" in states else "failed"
            else:
                return
            self._audit_change(actor, assignment, before, now)
            if request is not None and request.state != request_state:
                kind = "access_granted" if request_state == "delivered" else "request_decided"
                notify(self.session, kind, request.id, [assignment.subject_id], now=now)
                request_before = request.state
                request.state, request.updated_at = request_state, now
                audit(
                    self.session,
                    actor,
                    f"request.{request_state}",
                    ("request", request.id),
                    now=now,
                    before={"state": request_before},
                    after={"state": request_state},
                    version=request.version,
                )
        elif assignment.state == "expiring" and all(job.state == "done" for job in revokes):
            assignment.state = "removed"
            self._audit_change(actor, assignment, before, now)
            notify(self.session, "access_removed", assignment.id, [assignment.subject_id], now=now)

    def _audit_change(self, actor: Actor, assignment: Assignment, before: dict, now) -> None:
        if before["state"] == assignment.state:
            return
        audit(
            self.session,
            actor,
            f"assignment.{assignment.state}",
            ("assignment", assignment.id),
            now=now,
            before=before,
            after=assignment_view(assignment),
            version=assignment.version,
        )

    def active_for(self, subject_id: str, package: str) -> Assignment | None:
        return self.session.scalar(
            select(Assignment).where(
                Assignment.subject_id == subject_id,
                Assignment.package == package,
                Assignment.state.in_(ACTIVE_STATES),
            )
        )

    def get(self, actor: Actor, assignment_id: str, *, lock: bool = False) -> Assignment:
        assignment = self.session.get(Assignment, assignment_id, with_for_update=lock or None)
        if assignment is None or (
            actor.role is Role.USER and assignment.subject_id != actor.principal
        ):
            raise NotFoundError(f"no assignment {assignment_id!r}", field="id")
        return assignment

    def remove(self, actor: Actor, assignment_id: str, *, now: datetime) -> Assignment:
        """End access now (admin or the holder)."""
        assignment = self.get(actor, assignment_id, lock=True)
        if actor.role is not Role.ADMIN and actor.principal != assignment.subject_id:
            raise ForbiddenError("only an admin or the holder can remove an assignment")
        if assignment.state not in LIVE_STATES:
            raise ConflictError(f"assignment is already {assignment.state}", field="state")
        self.end(actor, assignment, "assignment.removal_requested", now=now)
        self.session.commit()
        return assignment

    def end(self, actor: Actor, assignment: Assignment, action: str, *, now: datetime) -> None:
        """Start taking access away: expiring now, removed once every revoke job is done."""
        before = assignment_view(assignment)
        assignment.state = "expiring"
        assignment.removed_at = now
        audit(
            self.session,
            actor,
            action,
            ("assignment", assignment.id),
            now=now,
            before=before,
            after=assignment_view(assignment),
            version=assignment.version,
        )
        self._enqueue_revokes(assignment, now=now)
        self.settle(assignment, actor, now=now)

    def expire_due(self, *, now: datetime, limit: int = 1000) -> int:
        """End every live assignment whose expires_at has passed; returns how many.

        Idempotent: the CLI, the worker and tests call it with an explicit `now`.
        """
        due = self.session.scalars(
            select(Assignment)
            .where(
                Assignment.state.in_(("delivering", ACTIVE, "failed")),
                Assignment.expires_at <= now,
            )
            .order_by(Assignment.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for assignment in due:
            self.end(SYSTEM, assignment, "assignment.expired", now=now)
        self.session.commit()
        return len(due)

    def list(
        self,
        actor: Actor,
        *,
        subject: str | None = None,
        package: str | None = None,
        state: str | None = None,
        expiring_before: datetime | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[Assignment], int]:
        query = select(Assignment)
        if actor.role is Role.USER:
            query = query.where(Assignment.subject_id == actor.principal)
        if subject:
            query = query.where(Assignment.subject_id == subject)
        if package:
            query = query.where(Assignment.package == package)
        if state:
            query = query.where(Assignment.state == state)
        if expiring_before:
            query = query.where(Assignment.expires_at < expiring_before)
        query = query.order_by(Assignment.starts_at.desc(), Assignment.id)
        return page(self.session, query, offset, limit)
