"""Guest clean-up: disable (then delete) jobs queued once, at the right time, per connector."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.directory import DirectoryService
from policyd.services.external_users import ExternalUsers, sweep_external_users
from policyd.services.requests import RequestService
from policyd.store.models import Assignment, Job
from tests.services.conftest import ROOT

DELETE_AFTER = timedelta(days=30)


@pytest.fixture
def grant(session, runtime, people, deliver, clock):
    """grant(user) -> the user's delivered Scope A assignment, filed by them."""

    def make(user: str) -> Assignment:
        request, _ = RequestService(session, runtime).create(
            Actor(user, Role.USER), "scope-a-readers", user, None, RequestOptions(), now=clock()
        )
        deliver(clock())
        return session.scalars(select(Assignment).where(Assignment.request_id == request.id)).one()

    return make


@pytest.fixture
def end(session, runtime, deliver, clock):
    """end(assignment): an admin removes it and the revoke runs."""

    def run(assignment: Assignment) -> None:
        AssignmentService(session, runtime).remove(ROOT, assignment.id, now=clock())
        session.commit()
        deliver(clock())

    return run


@pytest.fixture
def guest(session, people, clock):
    """ada, made a guest (still eligible for Scope A)."""
    DirectoryService(session).put_user(ROOT, "ada", {**people["ada"], "type": "guest"}, now=clock())
    session.commit()
    return "ada"


def sweep(session, clock, mode=ExternalUsers.DISABLE_THEN_DELETE) -> dict[str, int]:
    return sweep_external_users(session, now=clock(), mode=mode, delete_after=DELETE_AFTER)


def queued(session, kind: str) -> list[tuple[str, str]]:
    query = select(Job.subject_id, Job.connector).where(Job.kind == kind).order_by(Job.connector)
    return [tuple(row) for row in session.execute(query)]


def test_a_guest_with_live_access_is_left_alone(session, guest, grant, clock):
    """While the guest still holds access nothing is queued."""
    grant(guest)
    assert sweep(session, clock) == {"disabled": 0, "deleted": 0}
    assert queued(session, "disable_user") == []


def test_a_guest_whose_access_ended_is_disabled_once(session, guest, grant, end, clock):
    """Once the guest's last access ended, one disable job per granting connector is queued;
    a second sweep queues nothing more."""
    end(grant(guest))
    assert sweep(session, clock)["disabled"] == 1
    granted = session.scalars(select(Job.connector).where(Job.kind == "grant")).all()
    assert queued(session, "disable_user") == [(guest, c) for c in sorted(set(granted))]
    assert sweep(session, clock) == {"disabled": 0, "deleted": 0}


def test_the_delete_follows_after_delete_after_once(session, guest, grant, end, clock):
    """The delete job is queued delete_after the access ended, not a second before, once."""
    end(grant(guest))
    sweep(session, clock)
    clock.advance(days=30, seconds=-1)
    assert sweep(session, clock)["deleted"] == 0
    clock.advance(seconds=1)
    assert sweep(session, clock)["deleted"] == 1
    assert [user for user, _ in queued(session, "delete_user")] == [guest]
    clock.advance(days=1)
    assert sweep(session, clock)["deleted"] == 0


def test_disable_mode_never_deletes_and_none_does_nothing(session, guest, grant, end, clock):
    """With `none` nothing is queued; with `disable` no delete follows, however late."""
    end(grant(guest))
    assert sweep(session, clock, ExternalUsers.NONE) == {"disabled": 0, "deleted": 0}
    assert sweep(session, clock, ExternalUsers.DISABLE)["disabled"] == 1
    clock.advance(days=365)
    assert sweep(session, clock, ExternalUsers.DISABLE)["deleted"] == 0
    assert queued(session, "delete_user") == []


def test_members_are_never_cleaned_up(session, grant, end, clock):
    """A member whose access ended is neither disabled nor deleted."""
    end(grant("ada"))
    clock.advance(days=31)
    assert sweep(session, clock) == {"disabled": 0, "deleted": 0}


def test_a_guest_who_gets_access_again_is_disabled_again_after_it_ends(
    session, guest, grant, end, clock
):
    """Access granted again after a disable, and ended again, queues a fresh disable."""
    end(grant(guest))
    sweep(session, clock)
    clock.advance(hours=1)
    end(grant(guest))
    assert sweep(session, clock)["disabled"] == 1
    assert len(queued(session, "disable_user")) == 2
