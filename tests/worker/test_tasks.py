"""The worker runs the periodic tasks: one declared in this file, and the built-in ones."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from policyd.connectors.config import Connectors, load_instances
from policyd.periodic import TASKS, WORKER, PeriodicTask, Registry, TaskContext
from policyd.rules import PolicyRuntime
from policyd.services.actor import SYSTEM
from policyd.services.directory import DirectoryService
from policyd.services.memberships import DirectoryMemberships
from policyd.store import Database
from policyd.store.models import User
from policyd.worker import Worker

# Adding a task is this: a function of (context, now), declared with its period. A domain
# module declares into the built-in registry (`@periodic_task(...)`); this test declares
# into a copy of it, so no global changes.
TEST_TASKS = Registry(TASKS.tasks(WORKER))


@TEST_TASKS.task("test.count-users", every=timedelta(hours=1))
def count_users(context: TaskContext, now: datetime) -> int:
    """Count the people in the directory."""
    with context.sessions() as session:
        return session.scalar(select(func.count()).select_from(User)) or 0


@pytest.fixture
def make_worker(store: Database) -> Iterator:
    runtime = PolicyRuntime()
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    yield lambda **options: Worker(store.session, connectors, runtime, **options)
    connectors.close()
    runtime.close()


def test_a_task_declared_in_one_file_is_run_by_the_worker(make_worker, store, clock):
    """The worker given the registry runs the new task with the built-in ones; its count
    is in the sweep's result under its name."""
    with store.session() as session:
        DirectoryService(session).put_user(SYSTEM, "ada", {}, now=clock())
        session.commit()
    worker = make_worker(tasks=TEST_TASKS)
    result = worker.sweep(now=clock())
    assert result["test.count-users"] == 1
    assert {"expired", "jobs", "reminders", "released"} <= set(result)
    assert worker.scheduler.last["test.count-users"].now == clock()


def test_the_built_in_tasks_are_declared_beside_their_domains():
    """Each lifecycle task comes from the module that owns its domain."""
    where = {task.name: task.run.__module__ for task in TASKS.tasks(WORKER)}
    assert where == {
        "assignments.expire": "policyd.services.assignments",
        "auto-assign.sweep": "policyd.services.auto_assignment",
        "requests.expire-stages": "policyd.services.requests",
        "versions.publish-accepted": "policyd.services.publications",
        "reviews.open": "policyd.services.reviews",
        "reviews.remind": "policyd.services.reviews",
        "reviews.close": "policyd.services.reviews",
        "notifications.remind": "policyd.services.notifications",
        "approvals.remind": "policyd.services.approval_reminders",
        "external-users.clean-up": "policyd.services.external_users",
        "decision-log.drain": "policyd.services.decision_log",
        "decision-log.prune": "policyd.services.decision_log",
        "decision-log.partitions": "policyd.services.decision_log",
        "jobs.release-dead": "policyd.worker.tasks",
        "jobs.run-due": "policyd.worker.tasks",
    }


def test_a_failing_task_leaves_the_sweep_to_the_others(make_worker, clock):
    """A task that raises is recorded as failed; the sweep returns the others' counts."""
    tasks = Registry(TASKS.tasks(WORKER))

    @tasks.task("test.broken")
    def broken(context: TaskContext, now: datetime) -> int:
        raise RuntimeError("boom")

    worker = make_worker(tasks=tasks)
    result = worker.sweep(now=clock())
    assert "test.broken" not in result and result["expired"] == 0
    assert worker.scheduler.last["test.broken"].error == "RuntimeError: boom"


def test_the_drain_task_is_not_part_of_a_sweep(make_worker, clock):
    """The decision-log drain runs in its own thread of `policyd worker`, not in sweeps."""
    result = make_worker().sweep(now=clock())
    assert "decision-log.drain" not in result
    assert "decision-log.drain" not in make_worker().scheduler.last


def test_the_loop_returns_when_stopped_and_leaves_no_thread(make_worker):
    """`Worker.loop` (policyd worker, policyd serve's thread) ends with `stop`, its lane
    threads joined."""
    stop = threading.Event()

    def stopper(context: TaskContext, now: datetime) -> int:
        stop.set()
        return 0

    worker = make_worker(tasks=[PeriodicTask("test.stop", stopper, every=timedelta(hours=1))])
    before = threading.active_count()
    worker.loop(stop, interval=3600)
    assert worker.scheduler.last["test.stop"].error is None
    assert threading.active_count() == before
