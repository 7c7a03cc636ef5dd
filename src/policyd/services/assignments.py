"""Assignments: access a subject holds through a package, delivered and removed via the outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from policyd.domain import AssignmentState, allowed
from policyd.periodic import TaskContext, periodic_task
from policyd.rules import PolicyRuntime
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.assignment_delivery import (
    ACTIVE,
    LIVE_STATES,
    assignment_view,
    enqueue_grants,
    settle_assignments,
)
from policyd.services.assignment_removal import end_assignments, remove_revoked
from policyd.services.audit import audit
from policyd.services.auto_assign_queue import refuse_auto_removal, requeue_holders
from policyd.services.delegation import DelegationService
from policyd.services.directory import ACTIVE_STATES
from policyd.services.errors import ConflictError, ForbiddenError, NotFoundError
from policyd.services.listing import list_page
from policyd.store.models import AccessRequest, Assignment, Job
from policyd.store.query import among


class AssignmentService:
    def __init__(
        self,
        session: Session,
        runtime: PolicyRuntime,
        *,
        in_directory: frozenset[str] = frozenset(),
    ):
        """`in_directory`: connector instances of type `directory` whose grants ending
        assignments revoke in their own transaction (assignment_removal); by default every
        revoke goes through the outbox."""
        self.session = session
        self.runtime = runtime
        self._in_directory = in_directory
        self._delegation = DelegationService(session, runtime)

    def create(self, actor: Actor, request: AccessRequest, *, now: datetime) -> Assignment:
        """Grant approved access (the caller commits)."""
        assignment = Assignment(
            subject_id=request.subject_id,
            package=request.package,
            state=AssignmentState.DELIVERING,
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
        enqueue_grants(self.session, self.runtime, assignment, now=now)
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
        if assignment.expires_at is not None:
            self._archive_reminders(assignment.id, assignment.expires_at)
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

    def _archive_reminders(self, assignment_id: str, ended: datetime) -> None:
        """The reminders sent so far were for the old end: tag them with it, so the reminder
        sweep, which looks for `before:<seconds>` keys, reminds of the new end too."""
        self.session.execute(
            update(Job)
            .where(
                Job.assignment_id == assignment_id,
                Job.kind == "notify",
                Job.role.like("before:%"),
                Job.role.not_like("%@%"),
            )
            .values(role=Job.role + f"@{ended.isoformat()}"),
            execution_options={"synchronize_session": False},
        )

    def settle(self, assignment: Assignment, actor: Actor, *, now: datetime) -> None:
        """Move the assignment and its request on from what their jobs have done so far."""
        settle_assignments(self.session, [assignment], actor, now=now)

    def settle_many(self, assignment_ids: Iterable[str], actor: Actor, *, now: datetime) -> None:
        """Lock and settle many assignments (the worker, after a batch of jobs)."""
        ids = sorted(set(assignment_ids))
        if not ids:
            return
        # Locked in id order, so two workers settling overlapping sets cannot deadlock.
        locked = select(Assignment.id).where(among(self.session, Assignment.id, ids))
        self.session.execute(locked.order_by(Assignment.id).with_for_update()).all()
        removed = remove_revoked(self.session, ids, actor, now=now)  # most, in a mass expiry
        rest = [assignment_id for assignment_id in ids if assignment_id not in removed]
        if rest:
            query = select(Assignment).where(among(self.session, Assignment.id, rest))
            assignments = self.session.scalars(query.order_by(Assignment.id)).all()
            settle_assignments(self.session, assignments, actor, now=now)

    def active_for(self, subject_id: str, package: str) -> Assignment | None:
        return self.session.scalar(
            select(Assignment).where(
                Assignment.subject_id == subject_id,
                Assignment.package == package,
                Assignment.state.in_(ACTIVE_STATES),
            )
        )

    def live_for(self, subject_id: str, package: str) -> Assignment | None:
        """The person's live assignment of the package (delivering, active or failed)."""
        return self.session.scalars(
            select(Assignment)
            .where(
                Assignment.subject_id == subject_id,
                Assignment.package == package,
                Assignment.state.in_(LIVE_STATES),
            )
            .order_by(Assignment.id)
        ).first()

    def get(self, actor: Actor, assignment_id: str, *, lock: bool = False) -> Assignment:
        assignment = self.session.get(Assignment, assignment_id, with_for_update=lock or None)
        if assignment is None or not self._visible(actor, assignment):
            raise NotFoundError(f"no assignment {assignment_id!r}", field="id")
        return assignment

    def _visible(self, actor: Actor, assignment: Assignment) -> bool:
        """Users see what they hold and what they administer (catalog owners, package
        managers); apps what their own requests granted; others all."""
        if actor.role is Role.USER:
            return assignment.subject_id == actor.principal or self._delegation.scope(actor).covers(
                assignment.package
            )
        if actor.role is Role.APP:
            filed_by = self.session.get(AccessRequest, assignment.request_id)
            return filed_by is not None and filed_by.principal == actor.principal
        return True

    def remove(self, actor: Actor, assignment_id: str, *, now: datetime) -> Assignment:
        """End access now (an admin, the holder, or who administers its package).

        Raises:
            ConflictError: the transition table does not let it end (it is ending or ended).
        """
        self._refuse_outside_delegation(actor, assignment_id)
        assignment = self.get(actor, assignment_id, lock=True)
        if actor.principal != assignment.subject_id or actor.role is not Role.USER:
            self._delegation.require_package(actor, assignment.package, field="id")
        if not allowed(assignment.state, AssignmentState.EXPIRING):
            raise ConflictError(f"assignment is already {assignment.state}", field="state")
        refuse_auto_removal(assignment)
        self.end(actor, assignment, "assignment.removal_requested", now=now)
        self.session.commit()
        return assignment

    def _refuse_outside_delegation(self, actor: Actor, assignment_id: str) -> None:
        """A catalog owner or package manager is told 403 for someone else's assignment
        outside what they administer; a person who administers nothing still finds nothing
        (404), as before delegation."""
        assignment = self.session.get(Assignment, assignment_id)
        if assignment is None or actor.role is not Role.USER:
            return
        if assignment.subject_id == actor.principal:
            return
        scope = self._delegation.scope(actor)
        if scope.package_ids and not scope.covers(assignment.package):
            raise ForbiddenError(
                f"{actor.principal!r} administers only the packages of the catalogs they own "
                "and the packages they manage; this assignment's package is not one of them",
                field="id",
            )

    def end(self, actor: Actor, assignment: Assignment, action: str, *, now: datetime) -> None:
        """Start taking access away: expiring now, removed once every revoke job is done."""
        self.end_many(actor, [assignment], action, now=now)

    def end_many(
        self, actor: Actor, assignments: Sequence[Assignment], action: str, *, now: datetime
    ) -> None:
        """`end` for many assignments at once, with a few statements in all (mass expiry)."""
        end_assignments(
            self.session, actor, assignments, action, now=now, in_directory=self._in_directory
        )
        requeue_holders(self.session, self.runtime, assignments, now=now)

    def expire_due(self, *, now: datetime, limit: int = 1000) -> int:
        """End every live assignment whose expires_at has passed, `limit` at most; returns
        how many.

        Idempotent: the CLI, the worker and tests call it with an explicit `now`. Workers on
        PostgreSQL skip each other's rows.
        """
        due = self.session.scalars(
            select(Assignment)
            .where(
                Assignment.state.in_(LIVE_STATES),
                Assignment.expires_at <= now,
            )
            .order_by(Assignment.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        self.end_many(SYSTEM, due, "assignment.expired", now=now)
        self.session.commit()
        return len(due)

    def list(
        self,
        actor: Actor,
        *,
        subject: str | None = None,
        package: str | None = None,
        catalog: str | None = None,
        state: str | None = None,
        expiring_before: datetime | None = None,
        after: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[Assignment], int | None]:
        """A page of the assignments `actor` may see, filtered, and how many there are (None
        when paging by `after`).

        Raises:
            ForbiddenError: a person filters by a catalog they do not own.
            InvalidError: the catalog is not in the active version.
        """
        query = select(Assignment)
        if catalog is not None:
            packages = self._delegation.catalog_packages(actor, catalog)
            query = query.where(Assignment.package.in_(packages))
        if actor.role is Role.USER:
            managed = self._delegation.scope(actor).package_ids
            query = query.where(
                (Assignment.subject_id == actor.principal) | Assignment.package.in_(managed)
            )
        elif actor.role is Role.APP:
            filed = select(AccessRequest.id).where(AccessRequest.principal == actor.principal)
            query = query.where(Assignment.request_id.in_(filed))
        if subject:
            query = query.where(Assignment.subject_id == subject)
        if package:
            query = query.where(Assignment.package == package)
        if state:
            query = query.where(Assignment.state == state)
        if expiring_before:
            # Latest expiry first: a range of ix_assignments_expires, read backwards from the
            # bound. In start order the filter would walk every later start to fill a page.
            query = query.where(Assignment.expires_at < expiring_before)
            query = query.order_by(Assignment.expires_at.desc(), Assignment.id.desc())
        else:
            query = query.order_by(Assignment.starts_at.desc(), Assignment.id.desc())
        return list_page(self.session, query, after=after, offset=offset, limit=limit)


# After the tasks of a pass that look at access as it was (reminders, guests), as ending it
# starts its revocations (beside them, on PostgreSQL).
@periodic_task("assignments.expire", order=10)
def expire_assignments(context: TaskContext, now: datetime) -> dict[str, int]:
    """End every live assignment past its expires_at, a batch per transaction."""
    expired = 0
    # policyd's own directory groups lose their members in the expiry's transaction.
    types = context.connectors.types() if context.connectors is not None else {}
    in_directory = frozenset(name for name, kind in types.items() if kind == "directory")
    while True:
        with context.sessions() as session:
            service = AssignmentService(session, context.runtime, in_directory=in_directory)
            count = service.expire_due(now=now, limit=context.expiry_batch)
        expired += count
        if count < context.expiry_batch:
            return {"expired": expired}
