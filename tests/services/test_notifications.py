"""Notifications: queued once per recipient, expiry reminders once per offset, rendered late."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.leavers import LeaverService
from policyd.services.notifications import message, notify_many, remind_due, render
from policyd.services.requests import RequestService
from policyd.store.models import Assignment, Job
from tests.services.conftest import ROOT


@pytest.fixture
def grant(session, runtime, people, deliver, clock):
    """grant(user, package) -> the user's delivered assignment of the package."""

    def make(user: str, package: str) -> Assignment:
        request, _ = RequestService(session, runtime).create(
            Actor(user, Role.USER), package, user, None, RequestOptions(), now=clock()
        )
        deliver(clock())
        return session.scalars(select(Assignment).where(Assignment.request_id == request.id)).one()

    return make


def notes(session, resource_prefix: str = "") -> list[tuple[str, str, str]]:
    """(resource, recipient, key) of the queued notify jobs, sorted."""
    query = select(Job.resource, Job.subject_id, Job.role).where(Job.kind == "notify")
    rows = [tuple(row) for row in session.execute(query)]
    return sorted(row for row in rows if row[0].startswith(resource_prefix))


def test_notify_many_queues_each_note_once(session, clock):
    """A (kind, object, recipient) named twice is queued once."""
    notify_many(
        session,
        [
            ("approval_needed", "r1", "ada"),
            ("approval_needed", "r1", "ada"),
            ("approval_needed", "r1", "carol"),
        ],
        now=clock(),
    )
    session.commit()
    assert notes(session) == [
        ("approval_needed:r1", "ada", ""),
        ("approval_needed:r1", "carol", ""),
    ]


def test_filing_tells_the_stages_approvers(session, runtime, people, clock):
    """A request waiting for Scope A approvers queues approval_needed for each but the
    requester."""
    request, _ = RequestService(session, runtime).create(
        Actor("bob", Role.USER), "scope-a-readers", "bob", None, RequestOptions(), now=clock()
    )
    queued = notes(session, "approval_needed:")
    assert queued == [(f"approval_needed:{request.id}", u, "") for u in ("ada", "carol")]


def test_expiry_reminders_are_queued_once_per_offset(session, grant, clock):
    """A 30-day assignment gets one reminder 14 days before it ends and one 1 day before,
    each queued once however often the task runs."""
    assignment = grant("fab", "merger-collaboration")
    assert remind_due(session, now=clock()) == 0
    clock.advance(days=16, seconds=-1)
    assert remind_due(session, now=clock()) == 0
    clock.advance(seconds=2)
    assert remind_due(session, now=clock()) == 1
    assert remind_due(session, now=clock()) == 0
    clock.advance(days=13)
    assert remind_due(session, now=clock()) == 1
    assert remind_due(session, now=clock()) == 0
    assert notes(session, "access_expiring:") == [
        (f"access_expiring:{assignment.id}", "fab", "before:1209600"),
        (f"access_expiring:{assignment.id}", "fab", "before:86400"),
    ]


def test_access_shorter_than_the_offset_gets_no_reminder(session, grant, clock):
    """Eight-hour access gets no one-day reminder: it would only be noise."""
    grant("ada", "scope-a-readers")
    clock.advance(hours=7)
    assert remind_due(session, now=clock()) == 0


def test_removed_access_gets_no_reminder(session, runtime, grant, clock):
    """An assignment removed before its reminder is due is not reminded of."""
    assignment = grant("fab", "merger-collaboration")
    AssignmentService(session, runtime).remove(ROOT, assignment.id, now=clock())
    session.commit()
    clock.advance(days=29, hours=12)
    assert remind_due(session, now=clock()) == 0


def test_a_note_is_rendered_from_the_objects_state_when_sent(session, grant, clock):
    """The message names the recipient's address and the object's current values; an object
    that is gone renders as such."""
    assignment = grant("fab", "merger-collaboration")
    found = message(session, f"access_expiring:{assignment.id}", "fab")
    assert found is not None and found.address == "fab@fabrikam.com"
    assert found.rendered.subject == "Your access to merger-collaboration ends 2026-02-04 09:00 UTC"
    assert "Extend it in policyd" in found.rendered.text
    assert render(session, "access_removed", "no-such-object")[0].startswith("Your access to ?")


def test_nobody_to_tell_is_no_message(session, runtime, people, clock):
    """A deleted recipient or an unknown one gets no message."""
    LeaverService(session, runtime).delete_user(ROOT, "bob", now=clock())
    session.commit()
    assert message(session, "approval_needed:r1", "bob") is None
    assert message(session, "approval_needed:r1", "nobody") is None
