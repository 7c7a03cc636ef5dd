"""Leavers: a deleted or disabled user loses their access, open requests and approvals."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.errors import ConflictError, NotFoundError
from policyd.services.leavers import LeaverService
from policyd.services.requests import RequestService
from policyd.store.models import AccessRequest, Assignment, AuditRecord, Job
from tests.services.conftest import ROOT


@pytest.fixture
def file(session, runtime, people, clock):
    """file(user, package, justification=None) -> the request, filed by the user."""

    def make(user: str, package: str, justification: str | None = None) -> AccessRequest:
        requests = RequestService(session, runtime)
        options = RequestOptions(justification=justification)
        request, _ = requests.create(
            Actor(user, Role.USER), package, user, None, options, now=clock()
        )
        return request

    return make


@pytest.fixture
def leavers(session, runtime) -> LeaverService:
    return LeaverService(session, runtime)


def records(session, action: str) -> list[AuditRecord]:
    return list(session.scalars(select(AuditRecord).where(AuditRecord.action == action)))


def test_deleting_a_user_ends_their_assignment_and_queues_its_revoke(session, file, leavers, clock):
    """Ada's auto-approved Scope A access ends when she is deleted: her assignment leaves
    the live states and a revoke of the group is queued."""
    request = file("ada", "scope-a-readers")
    (assignment,) = session.scalars(select(Assignment).where(Assignment.subject_id == "ada"))

    ended = leavers.delete_user(ROOT, "ada", now=clock())

    assert ended["assignments_ended"] == 1
    assert assignment.request_id == request.id
    session.refresh(assignment)
    assert assignment.state in ("expiring", "removed")
    revokes = session.scalars(select(Job.resource).where(Job.kind == "revoke")).all()
    assert revokes == ["group:Group.ScopeA.Readers"]


def test_a_deleted_user_is_a_tombstone_whose_history_stays(session, file, leavers, clock):
    """After deletion the user is gone from the directory and cannot be deleted again, while
    their requests remain."""
    request = file("ada", "scope-a-readers")

    leavers.delete_user(ROOT, "ada", now=clock())

    directory = DirectoryService(session)
    with pytest.raises(NotFoundError):
        directory.get_user("ada")
    assert "ada" not in [user.id for user in directory.list_users()[0]]
    with pytest.raises(NotFoundError):
        directory.resolve_subject("ada")
    assert session.get(AccessRequest, request.id).subject_id == "ada"
    with pytest.raises(NotFoundError):
        leavers.delete_user(ROOT, "ada", now=clock())


def test_the_deletion_is_audited_with_who_when_and_what_ended(session, file, leavers, clock):
    """One directory.user_deleted record names the admin, the time and how much was ended;
    the assignment's end is audited as assignment.user_left with the rule version."""
    file("ada", "scope-a-readers")

    leavers.delete_user(ROOT, "ada", now=clock())

    (deleted,) = records(session, "directory.user_deleted")
    assert (deleted.actor, deleted.object_id, deleted.at) == ("root", "ada", clock())
    assert deleted.after["state"] == "deleted"
    assert deleted.after["assignments_ended"] == 1
    (left,) = records(session, "assignment.user_left")
    assert left.actor == "root" and left.version


def test_deleting_a_user_cancels_their_open_requests(session, runtime, file, leavers, clock):
    """Bob's pending Scope A request is canceled, with the reason, and leaves his
    approvers' inboxes."""
    request = file("bob", "scope-a-readers")
    assert request.state == "pending_approval"

    leavers.delete_user(ROOT, "bob", now=clock())

    session.refresh(request)
    assert request.state == "canceled"
    assert "bob left" in request.reason
    carol = Actor("carol", Role.USER)
    assert RequestService(session, runtime).list(carol, approver="carol") == ([], 0)


def test_an_approver_who_leaves_is_taken_off_the_stage_the_others_remain(
    session, runtime, file, leavers, clock
):
    """Of Scope A's approvers for bob's request (ada, carol), ada leaves: carol alone can
    still approve."""
    request = file("bob", "scope-a-readers")
    assert request.stages[0]["approvers"] == ["ada", "carol"]

    leavers.delete_user(ROOT, "ada", now=clock())

    session.refresh(request)
    assert (request.state, request.stages[0]["approvers"]) == ("pending_approval", ["carol"])
    (record,) = records(session, "request.approver_left")
    assert record.before["approvers"] == ["ada", "carol"]
    approved = RequestService(session, runtime).decide_stage(
        Actor("carol", Role.USER), request.id, "approve", comment=None, now=clock()
    )
    assert approved.state in ("approved", "delivering")


def test_a_stage_whose_only_approver_leaves_goes_to_its_escalation_target(
    session, runtime, file, leavers, clock
):
    """Sam's Sales Support stage 1 waits on his manager max only; max leaves, so the stage
    goes to its escalation target, Sales Ops (olga), at once."""
    request = file("sam", "sales-support", justification="launch")
    assert request.stages[0]["approvers"] == ["max"]

    leavers.delete_user(ROOT, "max", now=clock())

    session.refresh(request)
    assert (request.state, request.stage) == ("pending_approval", 1)
    assert request.stages[0]["approvers"] == ["olga"]
    (escalated,) = records(session, "request.escalated")
    assert (escalated.actor, escalated.object_id) == ("root", request.id)
    inbox, _ = RequestService(session, runtime).list(Actor("olga", Role.USER), approver="olga")
    assert [r.id for r in inbox] == [request.id]


def test_a_stage_whose_only_approver_leaves_with_no_fallback_is_denied(
    session, file, leavers, clock
):
    """Payments entry waits on the manager alone with no escalation target: when the
    manager leaves, the request is denied and the reason says why."""
    clerk = {"email": "pat@contoso.com", "department": "Finance", "job_title": "AP Clerk"}
    DirectoryService(session).put_user(ROOT, "pat", {**clerk, "manager_id": "max"}, now=clock())
    session.commit()
    request = file("pat", "payments-entry")
    assert request.stages[0]["approvers"] == ["max"]

    leavers.delete_user(ROOT, "max", now=clock())

    session.refresh(request)
    assert request.state == "denied"
    assert "only approver max left" in request.reason


def test_a_later_stage_does_not_wait_on_an_approver_who_left(
    session, runtime, file, leavers, clock
):
    """Sales Support's stage 2 was resolved to Sales Ops (olga) at filing; olga leaves while
    stage 1 waits, so the request is denied when stage 1 is approved."""
    request = file("sam", "sales-support", justification="launch")
    leavers.delete_user(ROOT, "olga", now=clock())

    moved = RequestService(session, runtime).decide_stage(
        Actor("max", Role.USER), request.id, "approve", comment=None, now=clock()
    )

    assert moved.state == "denied"
    assert "no approver could be resolved for stage 2" in moved.reason


def test_a_deleted_users_tokens_are_revoked(session, leavers, people, clock):
    """The deletion revokes the user's API tokens and counts them in its audit record."""
    from policyd.services.tokens import TokenService

    TokenService(session).create(ROOT, "bob", "user", now=clock())
    session.commit()

    assert leavers.delete_user(ROOT, "bob", now=clock())["tokens_revoked"] == 1
    (deleted,) = records(session, "directory.user_deleted")
    assert deleted.after["tokens_revoked"] == 1


def test_disable_and_enable_are_refused_from_the_wrong_state(leavers, people, clock):
    """Disabling a disabled user and enabling an active one are conflicts naming `id`; an
    unknown user is not found."""
    leavers.disable_user(ROOT, "ada", now=clock())
    with pytest.raises(ConflictError) as err:
        leavers.disable_user(ROOT, "ada", now=clock())
    assert err.value.field == "id"
    leavers.enable_user(ROOT, "ada", now=clock())
    with pytest.raises(ConflictError):
        leavers.enable_user(ROOT, "ada", now=clock())
    with pytest.raises(NotFoundError):
        leavers.disable_user(ROOT, "nobody", now=clock())
