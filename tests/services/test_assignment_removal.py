"""Ending assignments: a group of policyd's own directory loses its member in the transaction
that ends the assignment (the worker's expiry); other revokes go through the outbox."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.connectors.config import Connectors, load_instances
from policyd.domain import RequestOptions
from policyd.periodic import TaskContext
from policyd.rules import load_texts
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.assignments import AssignmentService, expire_assignments
from policyd.services.directory import DirectoryService
from policyd.services.jobs import JobService
from policyd.services.memberships import DirectoryMemberships
from policyd.services.requests import RequestService
from policyd.store.models import Assignment, AuditRecord, Job
from tests.services.test_assignments import EXTRA, READERS

DIRECTORY = frozenset({"directory"})  # the example policies' directory connector instance


def request(session, runtime, clock, name: str = "ada", package: str = "scope-a-readers"):
    """`name`'s auto-approved request for `package`; its grant job is queued, not run."""
    filed, _ = RequestService(session, runtime).create(
        Actor(name, Role.USER), package, name, None, RequestOptions(), now=clock()
    )
    return filed


def assignment_of(session, request_id: str) -> Assignment:
    return session.scalars(select(Assignment).where(Assignment.request_id == request_id)).one()


def members(session) -> list[str]:
    return DirectoryService(session).members(READERS)[0]


def revokes(session, assignment_id: str) -> list[str]:
    query = select(Job.state).where(Job.assignment_id == assignment_id, Job.kind == "revoke")
    return list(session.scalars(query))


def actions(session, *object_ids: str) -> list[str]:
    query = (
        select(AuditRecord.action)
        .where(AuditRecord.object_id.in_(object_ids))
        .order_by(AuditRecord.id)
    )
    return list(session.scalars(query))


def test_a_directory_group_loses_its_member_with_the_assignment(
    session, runtime, people, deliver, clock
):
    """Ending with the directory connector named: the membership goes in the same
    transaction, no revoke job is queued, the assignment is removed at once, and the trail
    shows the expiry, the membership's end and the removal."""
    filed = request(session, runtime, clock)
    deliver(clock())
    assignment = assignment_of(session, filed.id)
    assert members(session) == ["ada"]
    service = AssignmentService(session, runtime, in_directory=DIRECTORY)
    service.end_many(SYSTEM, [assignment], "assignment.expired", now=clock())
    session.commit()
    assert members(session) == []
    assert revokes(session, assignment.id) == []
    assert (assignment.state, assignment.removed_at) == ("removed", clock())
    trail = actions(session, assignment.id, READERS)
    assert trail[-3:] == ["assignment.expired", "directory.member_removed", "assignment.removed"]
    notices = select(Job.resource).where(Job.kind == "notify", Job.subject_id == "ada")
    assert f"access_removed:{assignment.id}" in set(session.scalars(notices))


def test_without_the_directory_named_the_revoke_is_a_job(session, runtime, people, deliver, clock):
    """Every other caller (the API, leavers, reviews) queues the revoke, as before: the
    member stays until a worker runs it."""
    filed = request(session, runtime, clock)
    deliver(clock())
    assignment = assignment_of(session, filed.id)
    AssignmentService(session, runtime).end_many(
        SYSTEM, [assignment], "assignment.expired", now=clock()
    )
    session.commit()
    assert (assignment.state, revokes(session, assignment.id)) == ("expiring", ["queued"])
    assert members(session) == ["ada"]
    deliver(clock())
    assert members(session) == []
    session.refresh(assignment)
    assert assignment.state == "removed"


def test_a_grant_still_running_gets_a_revoke_job_that_waits_for_it(session, runtime, people, clock):
    """A worker holds the grant (claimed, its connector call under way): removing the member
    now would be undone when the grant lands, so the revoke is queued behind it."""
    filed = request(session, runtime, clock)
    assignment = assignment_of(session, filed.id)
    (claimed,) = JobService(session).claim("worker-1", now=clock())
    assert (claimed.kind, claimed.assignment_id) == ("grant", assignment.id)
    service = AssignmentService(session, runtime, in_directory=DIRECTORY)
    service.end_many(SYSTEM, [assignment], "assignment.expired", now=clock())
    session.commit()
    assert (assignment.state, revokes(session, assignment.id)) == ("expiring", ["queued"])


def test_a_group_another_assignment_grants_keeps_the_member(
    session, runtime, example_bundle, people, deliver, clock
):
    """Reference counting holds here too: the other live assignment still grants the group."""
    runtime.activate(load_texts({"extra.yaml": EXTRA, **example_bundle.files}))
    first = request(session, runtime, clock)
    request(session, runtime, clock, package="scope-a-extra")
    deliver(clock())
    assignment = assignment_of(session, first.id)
    service = AssignmentService(session, runtime, in_directory=DIRECTORY)
    service.end_many(SYSTEM, [assignment], "assignment.expired", now=clock())
    session.commit()
    assert members(session) == ["ada"]
    assert (assignment.state, revokes(session, assignment.id)) == ("removed", [])


def test_the_expiry_task_revokes_directory_groups_in_its_transaction(
    session, runtime, people, deliver, clock
):
    """The worker's expiry finds the directory connector's instances among its connectors
    by their type: past expires_at the member is gone when the task returns."""
    filed = request(session, runtime, clock)
    deliver(clock())
    assignment = assignment_of(session, filed.id)

    def sessions() -> Session:  # a worker's sessions, inside the test's transaction
        return Session(bind=session.connection(), join_transaction_mode="create_savepoint")

    connectors = Connectors(load_instances(None), DirectoryMemberships(sessions))
    assert connectors.types() == {"directory": "directory"}
    context = TaskContext(sessions=sessions, runtime=runtime, connectors=connectors)
    later = assignment.expires_at + timedelta(seconds=1)
    assert expire_assignments(context, later) == {"expired": 1}
    session.expire_all()
    assert members(session) == []
    assert (assignment.state, revokes(session, assignment.id)) == ("removed", [])


def test_a_shared_group_whose_grant_runs_for_one_of_two_ending_assignments_waits_for_it(
    session, runtime, example_bundle, people, deliver, clock
):
    """Ada's two ending assignments grant the same group; a worker is still running the
    second one's grant. The one revoke belongs to that assignment, so it waits for the grant
    (through the directory too), and the other assignment is removed at once."""
    runtime.activate(load_texts({"extra.yaml": EXTRA, **example_bundle.files}))
    first = request(session, runtime, clock)
    deliver(clock())
    second = request(session, runtime, clock, package="scope-a-extra")
    one, other = assignment_of(session, first.id), assignment_of(session, second.id)
    grant = select(Job.id).where(Job.assignment_id == other.id, Job.kind == "grant")
    (claimed,) = JobService(session).claim("worker-1", now=clock(), ids=[session.scalar(grant)])
    assert (claimed.assignment_id, claimed.state) == (other.id, "running")
    service = AssignmentService(session, runtime, in_directory=DIRECTORY)
    service.end_many(SYSTEM, [one, other], "assignment.expired", now=clock())
    session.commit()
    assert (one.state, revokes(session, one.id)) == ("removed", [])
    assert (other.state, revokes(session, other.id)) == ("expiring", ["queued"])
    assert members(session) == ["ada"]  # until the grant is done and its revoke runs
