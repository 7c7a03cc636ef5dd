"""Job kinds run through the dispatch table; a kind no worker knows fails its job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from policyd.connectors.config import Connectors, load_instances
from policyd.rules import PolicyRuntime
from policyd.services.actor import SYSTEM
from policyd.services.directory import DirectoryService
from policyd.services.jobs import JobKind, JobService
from policyd.services.memberships import DirectoryMemberships
from policyd.store import Database
from policyd.worker import Worker
from policyd.worker.dispatch import RUN


@pytest.fixture
def worker(store: Database) -> Iterator[Worker]:
    runtime = PolicyRuntime()
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    yield Worker(store.session, connectors, runtime)
    connectors.close()
    runtime.close()


def test_every_job_kind_has_a_function():
    """The table covers the enum: a new kind without a runner fails here."""
    assert set(RUN) == set(JobKind)


def test_an_unknown_kind_in_the_database_is_a_failed_job(worker, store, clock):
    """A job whose kind no worker knows (written by a newer version, or by hand) fails at
    once, not retried, with the reason; it does not break the worker."""
    with store.session() as session:
        job = JobService(session).enqueue(
            "frobnicate", "directory", "group:x", "member", "ada", assignment_id=None, now=clock()
        )
        session.commit()
        job_id = job.id
    assert worker.run_jobs(now=clock()) == 1
    with store.session() as session:
        failed = JobService(session).get(job_id)
        assert failed.state == "failed"
        assert failed.last_error.startswith("unknown job kind 'frobnicate'")


def test_a_grant_job_runs_the_connectors_grant(worker, store, clock):
    """A grant job for the built-in directory adds the member through the table."""
    with store.session() as session:
        DirectoryService(session).put_user(SYSTEM, "ada", {}, now=clock())
        DirectoryService(session).put_group(SYSTEM, "G", None, now=clock())
        session.commit()
        job = JobService(session).enqueue(
            JobKind.GRANT, "directory", "group:G", "member", "ada", assignment_id=None, now=clock()
        )
        session.commit()
        job_id = job.id
    assert worker.run_jobs(now=clock()) == 1
    with store.session() as session:
        assert JobService(session).get(job_id).state == "done"
        assert DirectoryService(session).members("G")[0] == ["ada"]
