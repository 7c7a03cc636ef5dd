"""Approval stages: who approves, timeouts and escalation, approvers who leave."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from policyd.domain import RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.request_stages import request_view
from policyd.services.requests import RequestService
from policyd.store.models import AccessRequest, AuditRecord, Job, StageApprover, User
from tests.services.conftest import ROOT


@pytest.fixture
def requests(session, runtime, people) -> RequestService:
    return RequestService(session, runtime)


@pytest.fixture
def file(requests, clock):
    """file(name, package="scope-a-readers") -> the request `name` filed for themselves."""

    def make(name: str, package: str = "scope-a-readers") -> AccessRequest:
        options = RequestOptions(justification="needed")
        request, _ = requests.create(
            Actor(name, Role.USER), package, name, None, options, now=clock()
        )
        return request

    return make


def approvers(session, request: AccessRequest) -> list[str]:
    query = select(StageApprover.user_id).where(StageApprover.request_id == request.id)
    return sorted(session.scalars(query))


def actions(session, request: AccessRequest) -> list[str]:
    query = (
        select(AuditRecord.action)
        .where(AuditRecord.object_id == request.id)
        .order_by(AuditRecord.id)
    )
    return list(session.scalars(query))


def test_a_stage_starts_with_its_approvers_and_a_due_time(session, file, clock):
    """sam's first stage is his manager's, due in three days, and max is asked."""
    request = file("sam", "sales-support")
    assert (request.state, request.stage) == ("pending_approval", 1)
    assert approvers(session, request) == ["max"]
    assert request.stage_due_at == clock() + timedelta(days=3)
    assert request.stages[0]["escalate_to"] == ["olga"]
    notified = session.scalars(select(Job.subject_id).where(Job.kind == "notify"))
    assert "max" in list(notified)


def test_a_stage_whose_approvers_left_goes_to_its_escalation_target_at_once(session, file):
    """max has left before sam files: stage 1 goes straight to Sales Ops, escalated."""
    session.execute(update(User).where(User.id == "max").values(state="disabled"))
    request = file("sam", "sales-support")
    assert approvers(session, request) == ["olga"]
    assert request.stages[0]["escalated"] is True


def test_a_stage_past_its_timeout_escalates_once_then_expires(session, requests, file, clock):
    """Three days unanswered: Sales Ops takes over (audited, fresh timeout); three more and
    the request expires with the reason. A second run the same minute does nothing."""
    request = file("sam", "sales-support")
    clock.advance(days=3, minutes=1)
    assert requests.expire_stages(now=clock()) == {"escalated": 1, "timed_out": 0}
    assert approvers(session, request) == ["olga"]
    assert request.stage_due_at == clock() + timedelta(days=3)
    assert "request.escalated" in actions(session, request)
    assert requests.expire_stages(now=clock()) == {"escalated": 0, "timed_out": 0}
    clock.advance(days=3, minutes=1)
    assert requests.expire_stages(now=clock()) == {"escalated": 0, "timed_out": 1}
    assert request.state == "expired"
    assert request.reason == "stage 1 was not decided within its timeout"


def test_a_stage_without_escalation_expires_on_its_timeout(requests, file, clock):
    """Scope A's stage has no escalation: four hours unanswered end bob's request."""
    request = file("bob")
    clock.advance(hours=3)
    assert requests.expire_stages(now=clock()) == {"escalated": 0, "timed_out": 0}
    clock.advance(hours=1)
    assert requests.expire_stages(now=clock()) == {"escalated": 0, "timed_out": 1}
    assert request.state == "expired"


def test_a_leaving_approver_is_taken_off_the_waiting_stage(session, requests, file, clock):
    """carol leaves: bob's request waits for ada alone, audited as approver_left when the
    caller commits."""
    request = file("bob")
    counts = requests.withdraw(ROOT, "carol", now=clock())
    session.commit()  # the caller commits; audit records are written then
    assert counts == {"canceled": 0, "reassigned": 1, "escalated": 0, "denied": 0}
    assert approvers(session, request) == ["ada"]
    record = session.scalars(
        select(AuditRecord).where(AuditRecord.action == "request.approver_left")
    ).one()
    assert (record.before["approvers"], record.after["approvers"]) == (["ada", "carol"], ["ada"])


def test_the_last_approver_leaving_escalates_or_denies(session, requests, file, clock):
    """max was sam's only approver: Sales Ops takes over. Scope A has no escalation: once
    ada and carol have both left, bob's request is denied with the reason."""
    sam = file("sam", "sales-support")
    assert requests.withdraw(ROOT, "max", now=clock())["escalated"] == 1
    assert approvers(session, sam) == ["olga"]
    bob = file("bob")
    requests.withdraw(ROOT, "carol", now=clock())
    assert requests.withdraw(ROOT, "ada", now=clock())["denied"] == 1
    assert bob.state == "denied"
    assert "only approver ada left" in bob.reason


def test_a_leaver_s_own_open_requests_are_canceled(requests, file, clock):
    """bob leaves with a pending request: it is canceled, saying why."""
    request = file("bob")
    assert requests.withdraw(ROOT, "bob", now=clock())["canceled"] == 1
    assert (request.state, request.reason) == (
        "canceled",
        "bob left before the request was completed",
    )


def test_the_request_view_is_what_audit_records_show(file):
    request = file("bob")
    assert request_view(request) == {
        "state": "pending_approval",
        "stage": 1,
        "rule": "everyone-else",
        "version": request.version,
        "reason": request.reason,
    }
