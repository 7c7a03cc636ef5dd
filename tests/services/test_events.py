"""Lifecycle events: one `send` job per resource of the package on a listening connector."""

from __future__ import annotations

from sqlalchemy import select

from policyd.services.events import emit, request_event
from policyd.store.models import AccessRequest, Job

LISTENING = frozenset({"directory"})


def request(package: str = "scope-a-readers") -> AccessRequest:
    return AccessRequest(
        id="r-1",
        package=package,
        subject_id="ada",
        principal="bob",
        state="submitted",
        justification="on call",
    )


def sent(session) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.kind == "send").order_by(Job.resource)))


def test_an_event_is_queued_for_the_package_resource_of_a_listener(session, runtime, clock):
    """A created request for scope-a-readers is one queued send job to its group, the event
    as the role, its fields as the payload, due now."""
    event = request_event("request.created", request(), decision="auto_approve")
    emit(session, runtime, LISTENING, [event], now=clock())
    (job,) = sent(session)
    assert (job.connector, job.resource, job.role, job.subject_id) == (
        "directory",
        "group:Group.ScopeA.Readers",
        "request.created",
        "ada",
    )
    assert (job.state, job.run_at, job.assignment_id) == ("queued", clock(), None)
    assert job.payload["decision"] == "auto_approve"
    assert job.payload["request"]["requested_by"] == "bob"


def test_a_package_of_two_resources_sends_two_jobs(session, runtime, clock):
    """sales-support grants two groups: the event goes to each."""
    emit(session, runtime, LISTENING, [request_event("x", request("sales-support"))], now=clock())
    assert [job.resource for job in sent(session)] == [
        "group:CRM.SupportAgents",
        "group:Sales.Support",
    ]


def test_without_listeners_nothing_is_queued(session, runtime, clock):
    """No connector takes events: no job, whatever happened."""
    emit(session, runtime, frozenset(), [request_event("x", request())], now=clock())
    emit(session, runtime, frozenset({"webhook"}), [request_event("x", request())], now=clock())
    assert sent(session) == []


def test_an_event_about_a_package_the_rules_no_longer_have_is_dropped(session, runtime, clock):
    """A package missing from the active version has no resources to tell."""
    emit(session, runtime, LISTENING, [request_event("x", request("gone"))], now=clock())
    assert sent(session) == []


def test_a_request_event_says_what_the_request_is():
    """request_event: the event, package, subject, the request's own view and no assignment."""
    name, package, subject, fields, assignment = request_event(
        "request.approved", request(), by="carol"
    )
    assert (name, package, subject, assignment) == (
        "request.approved",
        "scope-a-readers",
        "ada",
        None,
    )
    assert fields == {
        "request": {
            "id": "r-1",
            "package": "scope-a-readers",
            "state": "submitted",
            "requested_by": "bob",
            "justification": "on call",
        },
        "by": "carol",
    }
