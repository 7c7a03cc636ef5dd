"""Access requests: filing, approval, cancellation; approved access becomes assignments (the
stages themselves: services/request_stages.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from policyd.domain import (
    RequestOptions,
    RequestState,
    ResolvedLifetime,
    Subject,
    transition,
)
from policyd.periodic import TaskContext, periodic_task
from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor, Role
from policyd.services.assignments import ACTIVE, AssignmentService
from policyd.services.audit import audit
from policyd.services.auto_assign_queue import refuse_auto_extension
from policyd.services.delegation import DelegationService
from policyd.services.errors import ConflictError, ForbiddenError, NotFoundError
from policyd.services.events import Event, emit, request_event
from policyd.services.listing import list_page
from policyd.services.notifications import notify
from policyd.services.request_filing import Filing
from policyd.services.request_stages import OPEN_STATES, ApprovalStages, request_view
from policyd.services.sod import APPROVED, Conflict, SodService
from policyd.store.models import AccessRequest, Approval, StageApprover


def _stored_lifetime(terms: dict[str, Any], expires_at: datetime | None) -> ResolvedLifetime:
    span = terms.get("span_seconds")
    not_after = terms.get("not_after")
    return ResolvedLifetime(
        expires_at=expires_at,
        explanation=terms["explanation"],
        clamped=terms["clamped"],
        span=timedelta(seconds=span) if span is not None else None,
        not_after=datetime.fromisoformat(not_after) if not_after else None,
    )


OWN_ONLY = (Role.USER, Role.APP)  # who sees only the requests they are part of
# What a requester may still cancel: nothing is granted yet (a leaver's open requests are
# canceled in any open state, services/request_stages.py).
CANCELABLE = (RequestState.SUBMITTED, RequestState.PENDING_APPROVAL)


class RequestService(Filing, ApprovalStages):
    def __init__(
        self, session: Session, runtime: PolicyRuntime, listeners: frozenset[str] = frozenset()
    ):
        """`listeners`: the connector instances that take lifecycle events (webhooks)."""
        self.session = session
        self.runtime = runtime
        self.listeners = listeners

    def _emit(self, event: Event, now: datetime) -> None:
        emit(self.session, self.runtime, self.listeners, [event], now=now)

    def _refuse_conflicts(
        self,
        actor: Actor,
        request: AccessRequest,
        subject: Subject,
        counting: tuple[str, ...],
        now: datetime,
    ) -> list[Conflict]:
        """Deny the request if separation of duties forbids it now; returns the conflicts."""
        conflicts = self._conflicts(request, subject, counting, now)
        if conflicts:
            self._deny_conflicting(actor, request, conflicts, now)
        return conflicts

    def _conflicts(
        self, request: AccessRequest, subject: Subject, counting: tuple[str, ...], now: datetime
    ) -> list[Conflict]:
        return SodService(self.session, self.runtime).conflicts(
            subject, request.package, counting=counting, exclude=request.id, now=now
        )

    def _deny_conflicting(
        self, actor: Actor, request: AccessRequest, conflicts: list[Conflict], now: datetime
    ) -> None:
        """Deny, recording the rule and the policy version that found the conflict."""
        request.rule, request.version = conflicts[0].rule, conflicts[0].version
        reasons = "; ".join(conflict.reason for conflict in conflicts)
        request.reason = f"separation of duties: {reasons}"
        self._move(actor, request, RequestState.DENIED, now)

    def _move(
        self,
        actor: Actor,
        request: AccessRequest,
        state: RequestState,
        now: datetime,
        *,
        tell: bool = True,
    ) -> None:
        """Move the request to `state`, audited; IllegalTransitionError unless allowed. The
        requester is told (request_decided) of a denial, a timeout, and a cancellation by
        anyone but themselves or the app that filed it, unless `tell` is false."""
        before = request_view(request)
        request.state = transition(request.state, state)
        request.updated_at = now
        ended = state in (RequestState.DENIED, RequestState.EXPIRED) or (
            state is RequestState.CANCELED
            and actor.principal not in (request.subject_id, request.principal)
        )
        if tell and ended:
            notify(self.session, "request_decided", request.id, [request.subject_id], now=now)
        if state is not RequestState.PENDING_APPROVAL:
            if request.stage is not None:
                self._clear_approvers(request)
            request.stage = None
        audit(
            self.session,
            actor,
            f"request.{state}",
            ("request", request.id),
            now=now,
            before=before,
            after=request_view(request),
            version=request.version,
        )

    def _grant(
        self, actor: Actor, request: AccessRequest, now: datetime, subject: Subject
    ) -> list[Conflict]:
        """Approved: create the assignment, whose outbox jobs deliver it (or extend one).

        Returns:
            What separation of duties found against the access now, if anything: then the
            request is denied instead and no grant job is written.
        """
        if conflicts := self._refuse_conflicts(actor, request, subject, APPROVED, now):
            return conflicts
        assignments = AssignmentService(self.session, self.runtime)
        held = (
            None
            if request.extends_assignment_id
            else assignments.live_for(request.subject_id, request.package)
        )
        if held is not None:
            # Granted meanwhile (auto-assigned, as a rule matched): never a second live
            # assignment of one package for one person.
            request.reason = f"assignment {held.id} ({held.origin}) already grants this package"
            self._move(actor, request, RequestState.CANCELED, now)
            return []
        self._move(actor, request, RequestState.APPROVED, now)
        # Approved by its last approver, or by the rules at once (no stages: approved_by null).
        approver = actor.principal if request.stages else None
        if not self._start_lifetime(request, now):
            self._move(actor, request, RequestState.EXPIRED, now)
            return []
        self._emit(request_event("request.approved", request, approved_by=approver), now)
        if request.extends_assignment_id:
            assignments.prolong(actor, request, now=now)
            self._move(
                actor, request, RequestState.DELIVERED, now
            )  # the access is already in place
        else:
            self._move(actor, request, RequestState.DELIVERING, now)
            assignments.create(actor, request, now=now)
        return []

    def _start_lifetime(self, request: AccessRequest, now: datetime) -> bool:
        """Count the access's lifetime from now, its approval; False (with the reason) when
        its window closed before it was approved."""
        if request.lifetime is None:  # filed before lifetimes counted from approval
            return True
        lifetime = _stored_lifetime(request.lifetime, request.expires_at)
        if lifetime.not_after is not None and lifetime.not_after <= now:
            request.reason = (
                f"the access window ended at {lifetime.not_after.isoformat()}, "
                "before the request was approved"
            )
            return False
        request.expires_at = lifetime.ends(now)
        counted = f"counted from approval at {now.isoformat()}"
        request.lifetime = {
            **request.lifetime,
            "granted_at": now.isoformat(),
            "expires_at": request.expires_at.isoformat() if request.expires_at else None,
            "explanation": f"{request.lifetime['explanation']}; {counted}",
        }
        return True

    def extend(
        self,
        actor: Actor,
        assignment_id: str,
        options: RequestOptions,
        *,
        now: datetime,
        idempotency_key: str | None = None,
    ) -> tuple[AccessRequest, bool]:
        """Ask for more time on an active assignment, decided by the rules in force now."""
        assignment = AssignmentService(self.session, self.runtime).get(actor, assignment_id)
        refuse_auto_extension(assignment)
        if assignment.state != ACTIVE:
            raise ConflictError(
                f"assignment is {assignment.state}; only active access extends", field="state"
            )
        open_request = self.session.scalar(
            select(AccessRequest.id).where(
                AccessRequest.extends_assignment_id == assignment.id,
                AccessRequest.state.in_(OPEN_STATES),
            )
        )
        if open_request:
            raise ConflictError(f"extension request {open_request} is still open")
        if not options.answers:  # asked again only if the requester answers anew
            first = self.session.get(AccessRequest, assignment.request_id or "")
            options = replace(options, answers=first.answers if first else None)
        return self.create(
            actor,
            assignment.package,
            assignment.subject_id,
            None,
            options,
            now=now,
            idempotency_key=idempotency_key,
            extends=assignment.id,
        )

    def get(self, actor: Actor, request_id: str, *, lock: bool = False) -> AccessRequest:
        request = self.session.get(AccessRequest, request_id, with_for_update=lock or None)
        if request is None or not self._visible(actor, request):
            raise NotFoundError(f"no request {request_id!r}", field="id")
        return request

    def _visible(self, actor: Actor, request: AccessRequest) -> bool:
        # Users and apps see the requests they are part of; admins and auditors all.
        if actor.role not in OWN_ONLY:
            return True
        approvers = {a for s in request.stages for a in s["approvers"]}
        mine = actor.principal in (request.subject_id, request.principal, *approvers)
        return mine or DelegationService(self.session, self.runtime).scope(actor).covers(
            request.package
        )

    def decide_stage(
        self,
        actor: Actor,
        request_id: str,
        verdict: str,
        *,
        comment: str | None,
        now: datetime,
    ) -> AccessRequest:
        """Record an approver's approve/deny on the current stage.

        Raises:
            ConflictError: the request is not waiting for this stage any more.
            ForbiddenError: the actor is not an approver of the stage, or is the requester.
        """
        request = self.get(actor, request_id, lock=True)
        if request.state != RequestState.PENDING_APPROVAL or request.stage is None:
            raise ConflictError(f"request is {request.state}; nothing to approve", field="state")
        if actor.principal in (request.subject_id,):
            raise ForbiddenError("nobody approves their own request")
        stage = request.stages[request.stage - 1]
        if actor.principal not in stage["approvers"]:
            raise ForbiddenError(f"you are not an approver of stage {request.stage}")
        if verdict == "approve":
            sod = SodService(self.session, self.runtime)
            sod.lock(request.subject_id)
            subject = sod.subject(request.subject_id)
            if conflicts := self._refuse_conflicts(actor, request, subject, APPROVED, now):
                self.session.commit()
                raise _refused(request, conflicts)
        request.approvals.append(
            Approval(
                stage=request.stage,
                approver=actor.principal,
                verdict=verdict,
                comment=comment,
                at=now,
            )
        )
        try:
            self.session.flush()
        except IntegrityError:
            self.session.rollback()
            raise ConflictError("this stage was already decided", field="stage") from None
        if verdict == "deny":
            request.reason = comment or f"denied by {actor.principal} at stage {request.stage}"
            self._move(actor, request, RequestState.DENIED, now)
        elif request.stage < len(request.stages):
            self._enter_stage(actor, request, request.stage + 1, now)
        elif conflicts := self._grant(actor, request, now, subject):
            self.session.commit()
            raise _refused(request, conflicts)
        self.session.commit()
        return request

    def cancel(self, actor: Actor, request_id: str, *, now: datetime) -> AccessRequest:
        request = self.get(actor, request_id, lock=True)
        if actor.principal not in (request.subject_id, request.principal):
            raise ForbiddenError("only the requester can cancel a request")
        if request.state not in CANCELABLE:
            raise ConflictError(
                f"request is {request.state}; it can no longer be canceled", field="state"
            )
        self._move(actor, request, RequestState.CANCELED, now)
        self.session.commit()
        return request

    def list(
        self,
        actor: Actor,
        *,
        state: str | None = None,
        approver: str | None = None,
        subject: str | None = None,
        catalog: str | None = None,
        after: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[AccessRequest], int | None]:
        """A page of the requests `actor` may see (or of their inbox, `approver="me"`),
        filtered, newest first, and how many there are (None when paging by `after`).

        Raises:
            InvalidError: the catalog is not in the active version.
            ForbiddenError: a person lists another's inbox.
        """
        query = select(AccessRequest)
        if catalog is not None:
            # Only narrows what the caller sees: their own requests and inbox included.
            packages = DelegationService(self.session, self.runtime).catalog_packages(
                actor, catalog, narrowing=True
            )
            query = query.where(_package_column(self.session).in_(packages))
        if state:
            query = query.where(AccessRequest.state == state)
        if subject:
            query = query.where(AccessRequest.subject_id == subject)
        me = actor.principal if approver == "me" else approver
        if actor.role in OWN_ONLY:
            if me is not None and me != actor.principal:
                raise ForbiddenError("users can only list their own approvals", field="approver")
            if me is None:
                delegation = DelegationService(self.session, self.runtime)
                query = query.where(delegation.requests_seen_by(actor))
        query = query.order_by(AccessRequest.created_at.desc(), AccessRequest.id.desc())
        if me is not None:  # the inbox: requests whose waiting stage `me` may decide
            query = query.join(
                StageApprover,
                (StageApprover.request_id == AccessRequest.id) & (StageApprover.user_id == me),
            ).where(AccessRequest.state == RequestState.PENDING_APPROVAL)
        return list_page(self.session, query, after=after, offset=offset, limit=limit)


def _package_column(session: Session) -> ColumnElement[str]:
    """The package column for a catalog's filter. SQLite, without statistics, would read the
    catalog's packages by their index and sort every match; `package || ''` keeps it on the
    list's own index (newest first), filtering as it walks, as PostgreSQL's planner does."""
    if session.get_bind().dialect.name == "sqlite":
        return AccessRequest.package.op("||")("")
    return AccessRequest.package


def _refused(request: AccessRequest, conflicts: list[Conflict]) -> ConflictError:
    """The error for an approval that separation of duties refused (the request is denied):
    the message names the rule, `errors.package` each conflict."""
    return ConflictError(
        f"request {request.id} is denied by rule {request.rule!r}: {request.reason}",
        field="package",
        errors=[conflict.reason for conflict in conflicts],
    )


@periodic_task("requests.expire-stages")
def expire_stages(context: TaskContext, now: datetime) -> dict[str, int]:
    """Escalate or time out approval stages whose timeout has passed."""
    listeners = context.connectors.listeners() if context.connectors else frozenset()
    with context.sessions() as session:
        return RequestService(session, context.runtime, listeners).expire_stages(now=now)
