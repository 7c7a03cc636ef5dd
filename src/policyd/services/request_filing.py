"""Filing a request: idempotency, who may file, leavers and duplicates refused, the decision,
the request row and its audit record, then acting on the decision."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from policyd.domain import (
    Decision,
    Outcome,
    RequestOptions,
    RequestState,
    ResolvedLifetime,
    Subject,
)
from policyd.rules.model import SOD_GROUP, SOD_PACKAGE
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.audit import audit
from policyd.services.decisions import DecisionService, LoggedDecision
from policyd.services.directory import DirectoryService, lock_user
from policyd.services.errors import ConflictError, ForbiddenError, InvalidError
from policyd.services.events import request_event
from policyd.services.request_stages import OPEN_STATES, request_view
from policyd.services.sod import FILING, SodService
from policyd.store.models import AccessRequest

IDEMPOTENCY_WINDOW = timedelta(hours=24)


class Filing:
    """RequestService's filing, a part it inherits (like ApprovalStages): `create` and the
    checks before a request is stored. Moving a request on (`_move`, `_grant`, stages,
    separation-of-duties denials) is RequestService's."""

    def create(
        self,
        actor: Actor,
        package: str,
        subject_id: str,
        supplied: Subject | None,
        options: RequestOptions,
        *,
        now: datetime,
        idempotency_key: str | None = None,
        extends: str | None = None,
    ) -> tuple[AccessRequest, bool]:
        """File a request and act on its decision; returns (request, created).

        A repeated Idempotency-Key from the same principal within 24 hours returns the
        request it created first, with created=False.
        """
        earlier = self._earlier(actor, idempotency_key, now) if idempotency_key else None
        if earlier is not None:
            return earlier, False
        if actor.role is Role.USER and subject_id != actor.principal:
            raise ForbiddenError("users can only request access for themselves", field="subject.id")
        # The user's row lock first, then the separation-of-duties lock, never the other way:
        # a deletion holds the row while it waits for the person's requests, and an approval
        # holds a request while it waits for the other.
        self._refuse_leavers(subject_id)
        # Held until commit: filings and approvals for one person are checked one at a time.
        SodService(self.session, self.runtime).lock(subject_id)
        if not extends:
            self._refuse_duplicates(package, subject_id)
        decisions = DecisionService(self.session, self.runtime)
        logged = decisions.evaluate(actor, package, subject_id, supplied, options, now=now)
        _check_terms(logged.decision, options, extends)
        request = self._file(actor, logged, options, extends, idempotency_key, now)
        self._act_on(actor, request, logged.decision, logged.subject, now)
        if logged.decision.outcome is not Outcome.DENY:
            # A guest from an unknown domain whom the rules let request: as in Entra, their
            # domain becomes a proposed connected organisation for an admin to configure.
            DirectoryService(self.session).propose_organization(actor, logged.subject, now=now)
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            raise ConflictError("a request with this Idempotency-Key is being created") from None
        return request, True

    def _earlier(self, actor: Actor, key: str, now: datetime) -> AccessRequest | None:
        """The request `actor` filed with Idempotency-Key `key` in the last 24 hours; an
        older one gives its key up."""
        earlier = self.session.scalar(
            select(AccessRequest).where(
                AccessRequest.principal == actor.principal,
                AccessRequest.idempotency_key == key,
            )
        )
        if earlier is not None and now - earlier.created_at < IDEMPOTENCY_WINDOW:
            return earlier
        if earlier is not None:
            earlier.idempotency_key = None  # expired: the key may be used again
            self.session.flush()
        return None

    def _file(
        self,
        actor: Actor,
        logged: LoggedDecision,
        options: RequestOptions,
        extends: str | None,
        idempotency_key: str | None,
        now: datetime,
    ) -> AccessRequest:
        """The request row of `logged`'s decision, submitted and audited."""
        decision = logged.decision
        request = AccessRequest(
            package=decision.package,
            subject_id=logged.subject.id,
            principal=actor.principal,
            state=RequestState.SUBMITTED,
            decision_id=logged.id,
            version=decision.version,
            rule=decision.rule,
            reason=decision.reason,
            justification=options.justification,
            requested_duration=options.duration,
            expires_at=decision.lifetime.expires_at if decision.lifetime else None,
            lifetime=lifetime_terms(decision.lifetime),
            answers=logged.answers,
            extends_assignment_id=extends,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
        )
        self.session.add(request)
        self.session.flush()
        after = {**request_view(request), "answers": request.answers}
        audit(
            self.session,
            actor,
            "request.created",
            ("request", request.id),
            now=now,
            after=after,
            version=decision.version,
        )
        return request

    def _act_on(
        self,
        actor: Actor,
        request: AccessRequest,
        decision: Decision,
        subject: Subject,
        now: datetime,
    ) -> None:
        """Move a new request as its decision (and separation of duties) says: denied,
        granted, or into its first approval stage."""
        conflicts = (
            self._conflicts(request, subject, FILING, now)
            if decision.outcome is not Outcome.DENY or _separates_duties(decision.rule)
            else []
        )
        outcome = Outcome.DENY if conflicts else decision.outcome
        self._emit(request_event("request.created", request, decision=outcome.value), now)
        if conflicts:
            self._deny_conflicting(actor, request, conflicts, now)
        elif decision.outcome is Outcome.DENY:
            self._move(actor, request, RequestState.DENIED, now)
        elif decision.outcome is Outcome.AUTO_APPROVE:
            self._grant(actor, request, now, subject)
        else:
            request.stages = self._resolve_stages(decision, subject, request.package)
            self._enter_stage(actor, request, 1, now)

    def _refuse_leavers(self, subject_id: str) -> None:
        """A disabled user requests nothing (a deleted one is not in the directory at all).

        The user's row stays locked until the request is stored, so a deletion running at
        the same moment either waits for this request and then ends it, or comes first and
        this request is refused."""
        state = lock_user(self.session, subject_id, share=True)
        if state not in (None, "active"):
            raise ConflictError(f"user {subject_id!r} is {state}", field="subject.id")

    def _refuse_duplicates(self, package: str, subject_id: str) -> None:
        pending = self.session.scalar(
            select(AccessRequest.id).where(
                AccessRequest.package == package,
                AccessRequest.subject_id == subject_id,
                AccessRequest.state.in_(OPEN_STATES),
            )
        )
        if pending:
            raise ConflictError(
                f"request {pending} for this package is still open", field="package"
            )
        held = AssignmentService(self.session, self.runtime).active_for(subject_id, package)
        if held is not None:
            raise ConflictError(
                f"assignment {held.id} already grants this package; extend it instead",
                field="package",
            )


def lifetime_terms(lifetime: ResolvedLifetime | None) -> dict[str, Any] | None:
    """What a request stores of its decision's lifetime: the explanation (clamps included)
    and the terms that count it from the moment access is granted (docs/lifecycle.md)."""
    if lifetime is None:
        return None
    return {
        "explanation": lifetime.explanation,
        "clamped": lifetime.clamped,
        "span_seconds": lifetime.span.total_seconds() if lifetime.span is not None else None,
        "not_after": lifetime.not_after.isoformat() if lifetime.not_after else None,
        "expires_at_if_granted_at_filing": (
            lifetime.expires_at.isoformat() if lifetime.expires_at else None
        ),
    }


def _check_terms(decision: Decision, options: RequestOptions, extends: str | None) -> None:
    """Refuse what the deciding rule does not allow: no justification where it asks for one
    (422), an extension it does not allow (409)."""
    if decision.outcome is Outcome.DENY:
        return
    if decision.justification_required and not options.has_justification:
        raise InvalidError("this package requires a justification", field="justification")
    if extends and not (decision.lifetime and decision.lifetime.extendable):
        raise ConflictError(
            f"rule {decision.rule!r} does not allow extending this package", field="assignment"
        )


def _separates_duties(rule: str | None) -> bool:
    return bool(rule) and rule.startswith((SOD_PACKAGE, SOD_GROUP))
