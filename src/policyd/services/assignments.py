"""Assignments: access a subject holds through a package, and its delivery to the directory."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor, Role
from policyd.services.audit import audit
from policyd.services.directory import ACTIVE_STATES, DirectoryService
from policyd.services.errors import ConflictError, ForbiddenError, NotFoundError
from policyd.store.models import AccessRequest, Assignment, Group, User
from policyd.store.query import page

ACTIVE = "active"
DIRECTORY_CONNECTOR = "directory"


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
            state=ACTIVE,
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
        self._deliver(actor, assignment, grant=True, now=now)
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

    def _deliver(self, actor: Actor, assignment: Assignment, *, grant: bool, now: datetime) -> None:
        """Until connectors exist, directory groups are granted and revoked in place."""
        policy = self.runtime.active
        if policy is None or assignment.package not in policy.bundle.packages:
            return
        directory = DirectoryService(self.session)
        if self.session.get(User, assignment.subject_id) is None:
            return  # a subject only a trusted app knows: nothing to deliver in our directory
        for resource in policy.bundle.packages[assignment.package].resources:
            if resource.connector != DIRECTORY_CONNECTOR or not resource.resource.startswith(
                "group:"
            ):
                continue
            group_id = resource.resource.removeprefix("group:")
            if self.session.get(Group, group_id) is None:
                directory.put_group(actor, group_id, group_id, now=now)
                self.session.flush()
            if grant:
                directory.add_member(actor, group_id, assignment.subject_id, now=now)
            elif not self._still_granted(assignment, group_id):
                directory.remove_member(actor, group_id, assignment.subject_id, now=now)

    def _still_granted(self, ending: Assignment, group_id: str) -> bool:
        """Whether another live assignment of the same person grants `group_id` too."""
        policy = self.runtime.active
        others = self.session.scalars(
            select(Assignment).where(
                Assignment.subject_id == ending.subject_id,
                Assignment.state.in_(ACTIVE_STATES),
                Assignment.id != ending.id,
            )
        )
        for other in others:
            package = policy.bundle.packages.get(other.package)
            if package and any(
                r.connector == DIRECTORY_CONNECTOR and r.resource == f"group:{group_id}"
                for r in package.resources
            ):
                return True
        return False

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
        if assignment.state not in ACTIVE_STATES:
            raise ConflictError(f"assignment is already {assignment.state}", field="state")
        before = assignment_view(assignment)
        assignment.state = "removed"
        assignment.removed_at = now
        self._deliver(actor, assignment, grant=False, now=now)
        audit(
            self.session,
            actor,
            "assignment.removed",
            ("assignment", assignment.id),
            now=now,
            before=before,
            after=assignment_view(assignment),
            version=assignment.version,
        )
        self.session.commit()
        return assignment

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
