"""Requests: filing, who approves, denial, cancellation, idempotency, stage timeouts."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.errors import ConflictError, ForbiddenError
from policyd.services.requests import RequestService
from policyd.store.models import AccessRequest, DecisionRecord, Job
from tests.services.conftest import ROOT


def user(name: str) -> Actor:
    return Actor(name, Role.USER)


@pytest.fixture
def requests(session, runtime, people) -> RequestService:
    return RequestService(session, runtime)


@pytest.fixture
def file(requests, clock):
    """file(by, package, subject=None, justification=None, key=None) -> (request, created)."""

    def make(by, package, subject=None, justification=None, key=None):
        actor = by if isinstance(by, Actor) else user(by)
        options = RequestOptions(justification=justification)
        return requests.create(
            actor,
            package,
            subject or actor.principal,
            None,
            options,
            now=clock(),
            idempotency_key=key,
        )

    return make


def inbox(requests: RequestService, name: str) -> list[str]:
    found, total = requests.list(user(name), approver="me")
    assert total == len(found)
    return [request.id for request in found]


def test_denial_ends_the_request_with_the_reason(requests, file, clock):
    """An approver's denial ends the request with their comment; a later approval is a
    conflict."""
    request, _ = file("bob", "scope-a-readers")
    denied = requests.decide_stage(
        user("carol"), request.id, "deny", comment="not now", now=clock()
    )
    assert (denied.state, denied.reason) == ("denied", "not now")
    with pytest.raises(ConflictError):
        requests.decide_stage(user("ada"), request.id, "approve", comment=None, now=clock())


def test_rule_deny_is_stored_as_denied(file):
    """A request the rules deny is stored as denied with the rule's reason and no stages."""
    request, created = file("ada", "merger-collaboration")
    assert created
    assert (request.state, request.reason) == ("denied", "no rule matched")


def test_cancel_by_the_requester_only(requests, file, clock):
    """The requester cancels a waiting request; another user may not; a second cancel is a
    conflict."""
    request, _ = file("bob", "scope-a-readers")
    with pytest.raises(ForbiddenError):
        requests.cancel(user("carol"), request.id, now=clock())
    assert requests.cancel(user("bob"), request.id, now=clock()).state == "canceled"
    with pytest.raises(ConflictError):
        requests.cancel(user("bob"), request.id, now=clock())
    # Nobody is told of what they did themselves (others' cancellations are: the
    # auto-assignment tests).
    told = requests.session.scalars(
        select(Job).where(Job.resource == f"request_decided:{request.id}")
    ).all()
    assert told == []


def test_idempotency_key_returns_the_first_request(file):
    """The same Idempotency-Key from the same principal returns the first request, not
    created again."""
    first, created = file("bob", "scope-a-readers", key="k-1")
    again, created_again = file("bob", "scope-a-readers", key="k-1")
    assert (created, created_again) == (True, False)
    assert again.id == first.id


def test_duplicate_open_request_is_a_conflict(file):
    """A second request for a package with one still open is a conflict naming `package`."""
    file("bob", "scope-a-readers")
    with pytest.raises(ConflictError) as err:
        file("bob", "scope-a-readers")
    assert err.value.field == "package"


def test_users_request_only_for_themselves_apps_for_anyone(file):
    """A user filing for someone else is refused naming subject.id; an app may file on
    their behalf and is the request's principal."""
    with pytest.raises(ForbiddenError) as err:
        file("bob", "scope-a-readers", subject="ada")
    assert err.value.field == "subject.id"
    on_behalf, _ = file(Actor("portal", Role.APP), "scope-a-readers", subject="ada")
    assert (on_behalf.principal, on_behalf.subject_id) == ("portal", "ada")


def test_sponsors_of_the_guests_organization_approve(session, file, clock):
    """A guest's connected organisation is found by e-mail domain; its sponsors approve, and
    the decision's input names the organisation."""
    directory = DirectoryService(session)
    org = {
        "display_name": "Northwind",
        "domains": ["Northwind.example"],
        "external_sponsors": ["olga"],
    }
    directory.put_organization(ROOT, "northwind", org, now=clock())
    directory.put_user(
        ROOT, "raj", {"email": "raj@northwind.example", "type": "guest"}, now=clock()
    )
    session.commit()
    request, _ = file("raj", "merger-collaboration")
    assert (request.state, request.rule) == ("pending_approval", "other-external-users")
    assert request.stages[0]["approvers"] == ["olga"]
    decision = session.get(DecisionRecord, request.decision_id)
    assert decision.input["subject"]["organization"] == "northwind"


def test_a_stage_that_times_out_escalates_once_then_expires(session, requests, file, clock):
    """Sales Support stage 1 (the manager, 3 days) escalates to Sales Ops, then expires; a
    late approval is a conflict."""
    request, _ = file("sam", "sales-support", justification="launch")
    clock.advance(days=2)
    assert requests.expire_stages(now=clock())["escalated"] == 0
    clock.advance(days=1, seconds=1)
    assert requests.expire_stages(now=clock())["escalated"] == 1
    session.commit()
    session.refresh(request)
    assert (request.state, request.stages[0]["approvers"]) == ("pending_approval", ["olga"])
    assert inbox(requests, "olga") == [request.id]
    clock.advance(days=3, seconds=1)
    assert requests.expire_stages(now=clock())["timed_out"] == 1
    session.commit()
    ended = session.get(AccessRequest, request.id)
    assert ended.state == "expired"
    assert ended.reason == "stage 1 was not decided within its timeout"
    with pytest.raises(ConflictError):
        requests.decide_stage(user("olga"), request.id, "approve", comment=None, now=clock())


def test_the_inbox_follows_the_waiting_stage(requests, file, clock):
    """An approver's inbox lists a request only while its current stage waits for them."""
    request, _ = file("sam", "sales-support", justification="launch")
    assert (inbox(requests, "max"), inbox(requests, "olga")) == ([request.id], [])
    requests.decide_stage(user("max"), request.id, "approve", comment=None, now=clock())
    assert (inbox(requests, "max"), inbox(requests, "olga")) == ([], [request.id])
    requests.decide_stage(user("olga"), request.id, "approve", comment=None, now=clock())
    assert (inbox(requests, "max"), inbox(requests, "olga")) == ([], [])
