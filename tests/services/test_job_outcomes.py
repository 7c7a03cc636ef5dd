"""What a worker's jobs came to: stored, and their assignments settled, in one transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import RequestOptions
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.job_outcomes import record_outcomes
from policyd.services.jobs import JobService
from policyd.services.requests import RequestService
from policyd.store.models import AccessRequest, Assignment, AuditRecord, Job

DELIVERY = frozenset({"grant", "revoke"})


@pytest.fixture
def claimed(session, runtime, people, clock) -> Job:
    """ada's auto-approved Scope A grant, claimed by worker w1."""
    RequestService(session, runtime).create(
        Actor("ada", Role.USER), "scope-a-readers", "ada", None, RequestOptions(), now=clock()
    )
    (job,) = JobService(session).claim("w1", now=clock())
    assert job.kind == "grant"
    return session.get(Job, job.id)


@pytest.fixture
def record(session, runtime, clock):
    """record(holder, outcomes): record_outcomes in sessions joining the test's transaction."""

    def sessions() -> Session:
        return Session(
            bind=session.connection(),
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
        )

    def run(holder: str, outcomes) -> None:
        record_outcomes(
            sessions, runtime, holder, outcomes, delivery=DELIVERY, actor=SYSTEM, now=clock()
        )
        session.expire_all()

    return run


def states(session) -> tuple[str, str]:
    assignment = session.scalars(select(Assignment)).one()
    request = session.get(AccessRequest, assignment.request_id)
    return assignment.state, request.state


def test_a_done_grant_makes_the_assignment_active_and_the_request_delivered(
    session, claimed, record, clock
):
    """Success: job done, assignment active, request delivered, each move audited."""
    record("w1", {claimed.id: None})
    job = session.get(Job, claimed.id)
    assert (job.state, job.finished_at, job.locked_by) == ("done", clock(), None)
    assert states(session) == ("active", "delivered")
    actions = set(session.scalars(select(AuditRecord.action)))
    assert {"assignment.active", "request.delivered"} <= actions


def test_a_retryable_failure_queues_the_job_again_and_settles_nothing(
    session, claimed, record, clock
):
    """A connector that was down: the job backs off, the assignment is still delivering."""
    record("w1", {claimed.id: ("server down", True)})
    job = session.get(Job, claimed.id)
    assert (job.state, job.last_error) == ("queued", "server down")
    assert job.run_at > clock()
    assert states(session) == ("delivering", "delivering")


def test_a_final_failure_fails_the_job_the_assignment_and_the_request(session, claimed, record):
    """A failure that will not pass: job failed, assignment failed, request failed."""
    record("w1", {claimed.id: ("no such group", False)})
    assert session.get(Job, claimed.id).state == "failed"
    assert states(session) == ("failed", "failed")


def test_a_job_taken_over_by_another_worker_keeps_their_outcome(session, claimed, record):
    """w2 never held the job: neither its success nor its failure is stored."""
    record("w2", {claimed.id: None})
    record("w2", {claimed.id: ("late", False)})
    job = session.get(Job, claimed.id)
    assert (job.state, job.locked_by, job.last_error) == ("running", "w1", None)
    assert states(session) == ("delivering", "delivering")


def test_no_outcomes_change_nothing(session, claimed, record):
    record("w1", {})
    assert session.get(Job, claimed.id).state == "running"


def test_an_assignment_whose_two_revokes_two_workers_ran_is_removed_once(
    session, claimed, record, runtime, clock
):
    """Expired with two revokes held by w1 and w2: still expiring after w1's, removed after
    w2's, with one audit record naming who, when and the rule's version."""
    record("w1", {claimed.id: None})
    assignment = session.scalars(select(Assignment)).one()
    AssignmentService(session, runtime).end(SYSTEM, assignment, "assignment.expired", now=clock())
    session.commit()
    jobs = JobService(session)
    jobs.enqueue(
        "revoke",
        "directory",
        "group:Other",
        "member",
        "ada",
        assignment_id=assignment.id,
        now=clock(),
    )
    session.commit()
    revokes = session.scalars(select(Job.id).where(Job.kind == "revoke").order_by(Job.resource))
    first, second = revokes.all()
    (a,) = jobs.claim("w1", now=clock(), ids=[first])
    (b,) = jobs.claim("w2", now=clock(), ids=[second])
    record("w1", {a.id: None})
    assert states(session)[0] == "expiring"
    record("w2", {b.id: None})
    assert states(session)[0] == "removed"
    removed = session.scalars(
        select(AuditRecord).where(AuditRecord.action == "assignment.removed")
    ).all()
    assert [(r.object_id, r.actor, r.at, r.version) for r in removed] == [
        (assignment.id, SYSTEM.principal, clock(), assignment.version)
    ]
