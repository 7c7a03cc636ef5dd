"""Approval stages of access requests: who approves each stage, timeouts and escalation, and
approvers who leave. A part of RequestService (a mixin it inherits), kept apart because stages
are their own concern."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from policyd.domain import Decision, RequestState, Subject
from policyd.rules import PolicyRuntime
from policyd.services.actor import SYSTEM, Actor
from policyd.services.approvers import approver_ids, present
from policyd.services.audit import audit
from policyd.services.notifications import notify
from policyd.store.models import AccessRequest, StageApprover
from policyd.store.query import among, insert_many

OPEN_STATES = (
    RequestState.SUBMITTED,
    RequestState.PENDING_APPROVAL,
    RequestState.APPROVED,
    RequestState.DELIVERING,
)

# Requests nobody decided yet: no assignment exists for them.
UNDECIDED = (RequestState.SUBMITTED, RequestState.PENDING_APPROVAL)


def request_view(request: AccessRequest) -> dict[str, Any]:
    return {
        "state": request.state,
        "stage": request.stage,
        "rule": request.rule,
        "version": request.version,
        "reason": request.reason,
    }


class ApprovalStages:
    """Stage handling for RequestService, which provides `session`, `runtime`, `_move` and
    `_emit`."""

    session: Session
    runtime: PolicyRuntime

    def _resolve_stages(self, decision: Decision, subject: Subject, package_id: str) -> list:
        package = self.runtime.active.bundle.package(package_id)
        stages = []
        for stage in decision.stages:
            approvers = approver_ids(stage.approvers, subject, package, self.session)
            fallback = approver_ids(stage.escalate_to, subject, package, self.session)
            stages.append(
                {
                    "approvers": approvers,
                    "escalate_to": fallback,
                    "refs": list(stage.approvers),
                    "timeout_seconds": int(stage.timeout.total_seconds()),
                }
            )
        return stages

    def _enter_stage(
        self, actor: Actor, request: AccessRequest, number: int, now: datetime
    ) -> None:
        stage = {**request.stages[number - 1], "started_at": now.isoformat(), "escalated": False}
        # Approvers resolved at filing who have left since are not asked.
        stage["approvers"] = present(self.session, stage["approvers"])
        stage["escalate_to"] = present(self.session, stage["escalate_to"])
        if not stage["approvers"] and stage["escalate_to"]:
            stage.update(approvers=stage["escalate_to"], escalated=True)
        self._set_stage(request, number, stage)
        if not stage["approvers"]:
            request.reason = f"no approver could be resolved for stage {number}"
            self._move(actor, request, RequestState.DENIED, now)
            return
        request.stage = number
        self._move(actor, request, RequestState.PENDING_APPROVAL, now)
        notify(self.session, "approval_needed", request.id, stage["approvers"], now=now)

    def _set_stage(self, request: AccessRequest, number: int, stage: dict) -> None:
        # A new list, so SQLAlchemy sees the JSON column change.
        request.stages = [*request.stages[: number - 1], stage, *request.stages[number:]]
        started = datetime.fromisoformat(stage["started_at"])
        request.stage_due_at = started + timedelta(seconds=stage["timeout_seconds"])
        self._clear_approvers(request)
        rows = [{"request_id": request.id, "user_id": user} for user in stage["approvers"]]
        insert_many(self.session, StageApprover, rows)

    def _clear_approvers(self, request: AccessRequest) -> None:
        self.session.execute(
            delete(StageApprover).where(StageApprover.request_id == request.id),
            execution_options={"synchronize_session": False},
        )

    def expire_stages(self, *, now: datetime) -> dict[str, int]:
        """Escalate or end approval stages whose timeout has passed; idempotent.

        A stage that times out goes to its escalation target once (with a fresh timeout);
        a stage with none, or one that was escalated already, ends the request as `expired`.
        """
        counts = {"escalated": 0, "timed_out": 0}
        waiting = self.session.scalars(
            select(AccessRequest)
            .where(
                AccessRequest.state == RequestState.PENDING_APPROVAL,
                AccessRequest.stage_due_at <= now,
            )
            .order_by(AccessRequest.stage_due_at)
            .with_for_update(skip_locked=True)
        ).all()
        for request in waiting:
            stage = request.stages[request.stage - 1]
            started = datetime.fromisoformat(stage["started_at"])
            if started + timedelta(seconds=stage["timeout_seconds"]) > now:
                continue
            if self._escalate(SYSTEM, request, now):
                counts["escalated"] += 1
            else:
                request.reason = f"stage {request.stage} was not decided within its timeout"
                self._move(SYSTEM, request, RequestState.EXPIRED, now)
                counts["timed_out"] += 1
        self.session.commit()
        return counts

    def _escalate(self, actor: Actor, request: AccessRequest, now: datetime) -> bool:
        """Hand the current stage to its escalation target (those of it who have not left),
        once, with a fresh timeout; False when it has none left or was escalated already."""
        stage = request.stages[request.stage - 1]
        fallback = present(self.session, stage["escalate_to"])
        if not fallback or stage["escalated"]:
            return False
        before = request_view(request)
        escalated = {
            **stage,
            "approvers": fallback,
            "escalated": True,
            "started_at": now.isoformat(),
        }
        self._set_stage(request, request.stage, escalated)
        request.updated_at = now
        notify(self.session, "approval_needed", request.id, escalated["approvers"], now=now)
        audit(
            self.session,
            actor,
            "request.escalated",
            ("request", request.id),
            now=now,
            before={**before, "approvers": stage["approvers"]},
            after={**request_view(request), "approvers": escalated["approvers"]},
            version=request.version,
        )
        return True

    def supersede(
        self, actor: Actor, granted: Iterable[tuple[str, str]], reason: str, *, now: datetime
    ) -> int:
        """(person, package) pairs were granted without a request (auto-assignment): cancel
        those people's undecided requests for them, with `reason` (the caller commits).

        A request an approver holds right now is skipped rather than waited for (it holds it
        while it waits for the person's lock, which the caller holds): its approval finds
        the access in place and cancels it then. Returns how many were canceled.
        """
        pairs = set(granted)
        if not pairs:
            return 0
        undecided = self.session.scalars(
            select(AccessRequest)
            .where(
                among(self.session, AccessRequest.subject_id, sorted({s for s, _ in pairs})),
                AccessRequest.state.in_(UNDECIDED),
            )
            .order_by(AccessRequest.id)
            .with_for_update(skip_locked=True)
        ).all()
        canceled = 0
        for request in undecided:
            if (request.subject_id, request.package) in pairs:
                request.reason = reason
                self._move(actor, request, RequestState.CANCELED, now)
                canceled += 1
        return canceled

    def withdraw(self, actor: Actor, user_id: str, *, now: datetime) -> dict[str, int]:
        """A user left: cancel their open requests and take them off every waiting stage
        (the caller ends their access and commits).

        A stage left with nobody goes to its escalation target, as on a timeout; one with
        none ends the request as `denied`, as a stage that resolves to no approver does.

        Returns:
            How many requests were canceled, reassigned (approvers left), escalated, denied.
        """
        counts = {"canceled": 0, "reassigned": 0, "escalated": 0, "denied": 0}
        own = self.session.scalars(
            select(AccessRequest)
            .where(AccessRequest.subject_id == user_id, AccessRequest.state.in_(OPEN_STATES))
            .order_by(AccessRequest.id)
            .with_for_update()
        ).all()
        for request in own:
            request.reason = f"{user_id} left before the request was completed"
            self._move(actor, request, RequestState.CANCELED, now, tell=False)
            counts["canceled"] += 1
        waiting = self.session.scalars(
            select(AccessRequest)
            .join(StageApprover, StageApprover.request_id == AccessRequest.id)
            .where(
                StageApprover.user_id == user_id,
                AccessRequest.state == RequestState.PENDING_APPROVAL,
            )
            .order_by(AccessRequest.id)
            .with_for_update(of=AccessRequest)
        ).all()
        for request in waiting:
            stage = request.stages[request.stage - 1]
            rest = [approver for approver in stage["approvers"] if approver != user_id]
            if rest:
                before = request_view(request)
                self._set_stage(request, request.stage, {**stage, "approvers": rest})
                request.updated_at = now
                audit(
                    self.session,
                    actor,
                    "request.approver_left",
                    ("request", request.id),
                    now=now,
                    before={**before, "approvers": stage["approvers"]},
                    after={**request_view(request), "approvers": rest},
                    version=request.version,
                )
                counts["reassigned"] += 1
            elif self._escalate(actor, request, now):
                counts["escalated"] += 1
            else:
                request.reason = (
                    f"stage {request.stage}'s only approver {user_id} left and it has no "
                    "escalation target"
                )
                self._move(actor, request, RequestState.DENIED, now)
                counts["denied"] += 1
        return counts
