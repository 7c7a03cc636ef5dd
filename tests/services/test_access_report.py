"""Who had access: holders of a package, resource or person at a moment or over a period,
with the terms they held it under."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policyd.domain import RequestOptions
from policyd.services.access_report import (
    AccessReportService,
    Window,
    check_target,
    window,
)
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.errors import ForbiddenError, InvalidError
from policyd.services.requests import RequestService
from tests.services.conftest import ROOT

AUDITOR = Actor("aud", Role.AUDITOR)
SCOPE_A = "scope-a-readers"


def user(name: str) -> Actor:
    return Actor(name, Role.USER)


@pytest.fixture
def history(session, runtime, people, deliver, clock):
    """09:00 ada is granted Scope A by the rules; 10:00 bob asks, carol approves at 10:30;
    11:00 ada gives hers up. The clock stands at 12:00; the times by name."""
    requests = RequestService(session, runtime)
    start = clock()
    requests.create(user("ada"), SCOPE_A, "ada", None, RequestOptions(), now=clock())
    deliver(clock())
    clock.advance(hours=1)
    bob, _ = requests.create(user("bob"), SCOPE_A, "bob", None, RequestOptions(), now=clock())
    clock.advance(minutes=30)
    requests.decide_stage(user("carol"), bob.id, "approve", comment=None, now=clock())
    deliver(clock())
    clock.advance(minutes=30)
    assignments = AssignmentService(session, runtime)
    (ada,) = assignments.list(user("ada"))[0]
    assignments.remove(user("ada"), ada.id, now=clock())
    deliver(clock())
    clock.advance(hours=1)
    return {
        "start": start,
        "bob_asked": start + timedelta(hours=1),
        "bob_approved": start + timedelta(hours=1, minutes=30),
        "ada_left": start + timedelta(hours=2),
    }


@pytest.fixture
def report(session) -> AccessReportService:
    return AccessReportService(session)


def holders(report, when: Window, **target) -> list[str]:
    found, _ = report.holders(ROOT, when, **target)
    return [holding.subject_id for holding in found]


def test_a_moment_shows_who_held_the_package_then(report, history):
    """At 09:00 ada alone, at 10:45 both, at 11:00 bob alone (ada's end is exclusive)."""
    assert holders(report, window(at=history["start"]), package=SCOPE_A) == ["ada"]
    assert holders(
        report, window(at=history["bob_approved"] + timedelta(minutes=15)), package=SCOPE_A
    ) == ["ada", "bob"]
    assert holders(report, window(at=history["ada_left"]), package=SCOPE_A) == ["bob"]
    assert (
        holders(report, window(at=history["start"] - timedelta(minutes=1)), package=SCOPE_A) == []
    )


def test_a_period_shows_everyone_who_held_it_during_it(report, history, clock):
    """From 11:00 to now only bob; over the whole morning both."""
    assert holders(report, window(start=history["ada_left"], end=clock()), package=SCOPE_A) == [
        "bob"
    ]
    morning = window(start=history["start"], end=clock())
    assert holders(report, morning, package=SCOPE_A) == ["ada", "bob"]


def test_a_holding_says_when_and_on_whose_approval(report, history, clock):
    """ada's terms: the rules approved, no approver; she held it until 11:00. bob's: carol
    approved at 10:30 in stage 1, still held."""
    found, total = report.holders(
        AUDITOR, window(start=history["start"], end=clock()), package=SCOPE_A
    )
    ada, bob = found
    assert total == 2
    assert (ada.state, ada.held_from, ada.held_until) == (
        "removed",
        history["start"],
        history["ada_left"],
    )
    (terms,) = ada.terms
    assert (terms.rule, terms.approved_by, terms.until) == (
        "eligible-members",
        [],
        history["ada_left"],
    )
    assert (bob.state, bob.held_until) == ("active", None)
    assert bob.terms[0].approved_by == [
        {"approver": "carol", "stage": 1, "at": history["bob_approved"]}
    ]


def test_a_report_by_person_or_by_resource(report, history, clock):
    """By subject: that person's holdings; by resource: whoever its grants reached."""
    whole = window(start=history["start"], end=clock())
    assert holders(report, whole, subject="bob") == ["bob"]
    assert holders(report, whole, resource="group:Group.ScopeA.Readers") == ["ada", "bob"]
    assert holders(report, whole, resource="group:Elsewhere") == []


def test_pages_walk_by_cursor_and_the_stream_gives_all(report, history, clock):
    """A page of one, then the next by its cursor; the stream in batches of one."""
    whole = window(start=history["start"], end=clock())
    first, total = report.holders(ROOT, whole, package=SCOPE_A, limit=1)
    assert ([h.subject_id for h in first], total) == (["ada"], 2)
    second, _ = report.holders(ROOT, whole, package=SCOPE_A, after=first.next_after, limit=1)
    assert [h.subject_id for h in second] == ["bob"]
    streamed = report.stream(ROOT, whole, package=SCOPE_A, batch=1)
    assert [h.subject_id for h in streamed] == ["ada", "bob"]


def test_a_bad_cursor_is_invalid_naming_after(report, history, clock):
    with pytest.raises(InvalidError) as err:
        report.holders(ROOT, window(at=clock()), package=SCOPE_A, after="%%%")
    assert err.value.field == "after"


def test_only_admins_and_auditors_see_the_report(report, clock):
    for role in (Role.USER, Role.APP):
        with pytest.raises(ForbiddenError):
            report.holders(Actor("x", role), window(at=clock()), package=SCOPE_A)


def test_nobody_holding_is_an_empty_report(report, clock):
    assert report.holders(ROOT, window(at=clock()), package=SCOPE_A) == ([], 0)


def test_a_window_is_a_moment_or_an_ordered_period(clock):
    """`at` alone, or `from` and `to` with `to` later; anything else names the field."""
    now = clock()
    assert window(at=now).moment
    assert not window(start=now, end=now + timedelta(hours=1)).moment
    cases = [
        ({"at": now, "start": now}, "at"),
        ({}, "at"),
        ({"end": now}, "from"),
        ({"start": now}, "to"),
        ({"start": now, "end": now}, "to"),
    ]
    for given, field in cases:
        with pytest.raises(InvalidError) as err:
            window(**given)
        assert err.value.field == field, given


def test_a_report_is_about_exactly_one_target():
    """None given names `package`; two name the second."""
    check_target("p", None, None)
    with pytest.raises(InvalidError) as none:
        check_target(None, None, None)
    with pytest.raises(InvalidError) as two:
        check_target(None, "group:G", "ada")
    assert (none.value.field, two.value.field) == ("package", "subject")
