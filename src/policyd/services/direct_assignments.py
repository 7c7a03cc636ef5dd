"""Direct assignment: who administers a package grants it for a lifetime, without approval."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import Outcome, RequestOptions, RequestState, transition
from policyd.rules import PolicyRuntime
from policyd.rules.model import SOD_GROUP, SOD_PACKAGE, AccessPackage
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.audit import audit
from policyd.services.decisions import DecisionService, LoggedDecision
from policyd.services.delegation import DelegationService
from policyd.services.directory import lock_user
from policyd.services.errors import ConflictError, InvalidError, NotFoundError
from policyd.services.request_stages import OPEN_STATES, request_view
from policyd.services.sod import SodService
from policyd.store.models import AccessRequest, Assignment

DIRECT_RULE = "direct-assignment"  # the rule id a direct assignment's request names


def longest_lifetime(package: AccessPackage) -> timedelta | None:
    """The longest access the package's policy grants: the largest `max` (or `duration`
    where there is no max) of its lifetime and its granting rules' lifetimes; None when one
    of them is permanent (no bound).

    Raises:
        InvalidError: no lifetime of the package is a duration (only end dates or windows).
    """
    lifetimes = [package.lifetime] + [
        r.lifetime for r in package.rules if r.outcome is not Outcome.DENY
    ]
    origin = datetime(2000, 1, 1)
    longest: timedelta | None = None
    for lifetime in filter(None, lifetimes):
        if lifetime.permanent:
            return None
        bound = lifetime.maximum or lifetime.duration
        if bound is not None and (longest is None or origin + bound > origin + longest):
            longest = (origin + bound) - origin
    if longest is None:
        raise InvalidError(
            f"package {package.id!r} has no lifetime duration to bound a direct assignment",
            field="package",
        )
    return longest


class DirectAssignmentService:
    def __init__(self, session: Session, runtime: PolicyRuntime):
        self.session = session
        self.runtime = runtime

    def assign(
        self,
        actor: Actor,
        package: str,
        subject_id: str,
        duration: timedelta,
        *,
        justification: str | None = None,
        now: datetime,
    ) -> Assignment:
        """Grant `package` to `subject_id` for `duration` (at most the package's longest
        lifetime), recorded as an approved request and audited; the outbox delivers it.

        Raises:
            ForbiddenError: the actor does not administer the package.
            InvalidError: the duration is longer than the package's policy allows.
            NotFoundError: no such package or user.
            ConflictError: the user is disabled, already holds or asks for the package, or
                holds something incompatible with it.
        """
        DelegationService(self.session, self.runtime).require_package(actor, package)
        longest = longest_lifetime(self._package(package))
        if longest is not None and now + duration > now + longest:
            raise InvalidError(
                f"longer than package {package!r} allows (at most {longest})", field="duration"
            )
        self._refuse_subject(package, subject_id)
        logged = self._decide(actor, package, subject_id, justification, now)
        decision = logged.decision
        request = AccessRequest(
            package=package,
            subject_id=subject_id,
            principal=actor.principal,
            state=transition(RequestState.SUBMITTED, RequestState.APPROVED),
            decision_id=logged.id,
            version=decision.version,
            rule=DIRECT_RULE,
            reason=f"assigned directly by {actor.principal}",
            justification=justification,
            expires_at=now + duration,
            created_at=now,
            updated_at=now,
        )
        self.session.add(request)
        self.session.flush()
        request.state = transition(request.state, RequestState.DELIVERING)
        audit(
            self.session,
            actor,
            "request.assigned_directly",
            ("request", request.id),
            now=now,
            after=request_view(request),
            version=decision.version,
        )
        assignment = AssignmentService(self.session, self.runtime).create(actor, request, now=now)
        assignment.origin = "direct"
        self.session.commit()
        return assignment

    def _refuse_subject(self, package: str, subject_id: str) -> None:
        """Lock the user (as a request does) and refuse a missing or disabled one, or one who
        holds or has asked for the package."""
        state = lock_user(self.session, subject_id, share=True)
        if state is None:
            raise NotFoundError(f"no user {subject_id!r}", field="subject")
        if state != "active":
            raise ConflictError(f"user {subject_id!r} is {state}", field="subject")
        SodService(self.session, self.runtime).lock(subject_id)
        self._refuse_held(package, subject_id)

    def _decide(
        self,
        actor: Actor,
        package: str,
        subject_id: str,
        justification: str | None,
        now: datetime,
    ) -> LoggedDecision:
        """The rules' decision, logged; a separation-of-duties deny refuses the assignment."""
        # Decided and logged as an app would ask about someone else: on directory data, so
        # the decision log shows what the rules said, and separation of duties still holds.
        asking = Actor(actor.principal, Role.APP)
        options = RequestOptions(justification=justification)
        logged = DecisionService(self.session, self.runtime).evaluate(
            asking, package, subject_id, None, options, now=now
        )
        decision = logged.decision
        if decision.outcome is Outcome.DENY and (decision.rule or "").startswith(
            (SOD_PACKAGE, SOD_GROUP)
        ):
            raise ConflictError(decision.reason, field="package")
        return logged

    def _package(self, package: str) -> AccessPackage:
        active = self.runtime.active
        if active is None:
            raise NotFoundError("no policy version is active; publish one first")
        access = active.bundle.packages.get(package)
        if access is None:
            raise NotFoundError(f"no access package {package!r}", field="package")
        return access

    def _refuse_held(self, package: str, subject_id: str) -> None:
        assignments = AssignmentService(self.session, self.runtime)
        if assignments.active_for(subject_id, package) is not None:
            raise ConflictError(f"{subject_id!r} already holds {package!r}", field="package")
        open_request = self.session.scalar(
            select(AccessRequest.id).where(
                AccessRequest.package == package,
                AccessRequest.subject_id == subject_id,
                AccessRequest.state.in_(OPEN_STATES),
            )
        )
        if open_request is not None:
            raise ConflictError(
                f"{subject_id!r} has an open request for {package!r}", field="package"
            )
