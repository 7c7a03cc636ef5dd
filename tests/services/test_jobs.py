"""The outbox: claiming, leases, finishing, failing with backoff, retry and its audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.domain import JobState, RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.errors import ConflictError, NotFoundError
from policyd.services.jobs import MAX_ATTEMPTS, JobService
from policyd.services.requests import RequestService
from policyd.store.models import Assignment, AuditRecord, Job
from tests.services.conftest import ROOT


@pytest.fixture
def jobs(session) -> JobService:
    return JobService(session)


@pytest.fixture
def queue(session, jobs, clock):
    """queue(kind="grant", subject="ada") -> the id of a new job due now, committed."""

    def make(kind: str = "grant", subject: str = "ada") -> str:
        job = jobs.enqueue(
            kind, "directory", "Group.X", "member", subject, assignment_id=None, now=clock()
        )
        session.commit()
        return job.id

    return make


def test_claim_takes_due_jobs_once(jobs, queue, clock):
    """A worker claims a due job, running with a lease and one attempt; a second worker
    finds nothing to claim while the lease holds."""
    job_id = queue()
    [claimed] = jobs.claim("w1", now=clock())
    assert (claimed.id, claimed.state, claimed.attempts) == (job_id, JobState.RUNNING, 1)
    assert claimed.locked_by == "w1"
    assert jobs.claim("w2", now=clock()) == []


def test_claim_skips_jobs_not_yet_due(jobs, session, queue, clock):
    """A job whose run_at is in the future is not claimed until then."""
    job_id = queue()
    session.get(Job, job_id).run_at = clock() + timedelta(minutes=5)
    session.commit()
    assert jobs.claim("w1", now=clock()) == []
    clock.advance(minutes=5)
    assert [job.id for job in jobs.claim("w1", now=clock())] == [job_id]


def test_a_lapsed_lease_is_claimed_again(jobs, queue, clock):
    """A running job whose worker's lease lapsed is taken by another worker, a second
    attempt; the first worker no longer holds it."""
    job_id = queue()
    jobs.claim("w1", now=clock(), lease=timedelta(minutes=1))
    clock.advance(minutes=1, seconds=1)
    [again] = jobs.claim("w2", now=clock())
    assert (again.id, again.locked_by, again.attempts) == (job_id, "w2", 2)
    assert not jobs.holds(job_id, "w1")
    assert jobs.holds(job_id, "w2")


def test_renew_extends_only_the_holders_lease(jobs, queue, clock):
    """A heartbeat renews the leases its worker holds and none of another worker's."""
    job_id = queue()
    jobs.claim("w1", now=clock())
    until = clock() + timedelta(minutes=10)
    assert jobs.renew([job_id], "w2", until=until) == 0
    assert jobs.renew([job_id], "w1", until=until) == 1
    clock.advance(minutes=5)
    assert jobs.claim("w2", now=clock()) == []


def test_release_queues_a_dead_workers_jobs_again(jobs, queue, clock):
    """The running jobs of a worker known dead are queued again, due now."""
    job_id = queue()
    jobs.claim("w1", now=clock())
    assert jobs.holders() == {"w1"}
    assert jobs.release(["w1"], now=clock()) == 1
    assert jobs.holders() == set()
    assert [job.id for job in jobs.claim("w2", now=clock())] == [job_id]


def test_finish_many_marks_only_the_holders_jobs_done(jobs, session, queue, clock):
    """finish_many marks done the jobs the worker still holds and leaves another's."""
    mine, theirs = queue(subject="ada"), queue(subject="bob")
    jobs.claim("w1", now=clock(), ids=[mine])
    jobs.claim("w2", now=clock(), ids=[theirs])
    done = jobs.finish_many([mine, theirs], "w1", now=clock())
    session.commit()
    assert done == [(mine, None, "grant")]
    assert session.get(Job, mine).state == JobState.DONE
    assert session.get(Job, theirs).state == JobState.RUNNING


def test_a_retryable_failure_backs_off(jobs, session, queue, clock):
    """A retryable failure queues the job again later, keeping the error, unlocked."""
    job_id = queue()
    jobs.claim("w1", now=clock())
    job = jobs.fail(job_id, "timeout", retryable=True, now=clock())
    session.commit()
    assert (job.state, job.last_error, job.locked_by) == (JobState.QUEUED, "timeout", None)
    assert clock() < job.run_at <= clock() + timedelta(seconds=5)


def test_a_permanent_failure_or_the_last_attempt_fails_the_job(jobs, session, queue, clock):
    """A failure that is not retryable fails the job at once; so does a retryable one on its
    last attempt."""
    first, second = queue(subject="ada"), queue(subject="bob")
    jobs.claim("w1", now=clock())
    assert jobs.fail(first, "denied", retryable=False, now=clock()).state == JobState.FAILED
    session.get(Job, second).attempts = MAX_ATTEMPTS
    assert jobs.fail(second, "timeout", retryable=True, now=clock()).state == JobState.FAILED
    session.commit()


def test_retry_queues_a_failed_job_with_fresh_attempts_and_audits(jobs, session, queue, clock):
    """Retrying a failed job queues it due now with MAX_ATTEMPTS more attempts, recorded as
    job.retried with its state before and after."""
    job_id = queue()
    jobs.claim("w1", now=clock())
    jobs.fail(job_id, "denied", retryable=False, now=clock())
    session.commit()
    clock.advance(hours=1)
    job = jobs.retry(ROOT, job_id, now=clock())
    assert (job.state, job.run_at, job.max_attempts) == (JobState.QUEUED, clock(), 1 + MAX_ATTEMPTS)
    record = session.scalar(select(AuditRecord).where(AuditRecord.action == "job.retried"))
    assert (record.actor, record.object_id) == ("root", job_id)
    assert (record.before["state"], record.after["state"]) == ("failed", "queued")


def test_only_failed_jobs_are_retried(jobs, queue, clock):
    """Retrying a job that has not failed is a conflict naming `state`; an unknown job is
    not found."""
    job_id = queue()
    with pytest.raises(ConflictError) as err:
        jobs.retry(ROOT, job_id, now=clock())
    assert err.value.field == "state"
    with pytest.raises(NotFoundError):
        jobs.retry(ROOT, "no-such-job", now=clock())


def test_a_failed_grant_of_ended_access_is_not_retried(jobs, session, runtime, people, clock):
    """Retrying a failed grant whose assignment was removed meanwhile is a conflict: access
    that ended is not granted again."""
    RequestService(session, runtime).create(
        Actor("ada", Role.USER), "scope-a-readers", "ada", None, RequestOptions(), now=clock()
    )
    [grant] = jobs.claim("w1", now=clock(), where=Job.kind == "grant")
    jobs.fail(grant.id, "denied", retryable=False, now=clock())
    session.commit()
    AssignmentService(session, runtime).remove(ROOT, grant.assignment_id, now=clock())
    session.commit()
    assert session.get(Assignment, grant.assignment_id).state not in ("active", "delivering")
    with pytest.raises(ConflictError, match="access that ended is not granted again"):
        jobs.retry(ROOT, grant.id, now=clock())


def test_finish_due_ends_queued_jobs_of_one_kind(jobs, session, queue, clock):
    """finish_due marks due jobs of the kind done without running them, others stay."""
    note, grant = queue(kind="notify"), queue(kind="grant")
    assert jobs.finish_due("notify", now=clock(), limit=10) == 1
    session.expire_all()
    assert session.get(Job, note).state == JobState.DONE
    assert session.get(Job, grant).state == JobState.QUEUED
    assert jobs.backlog() == 1
