"""The periodic-task registry and scheduler: schedules, isolation, records, lanes."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from policyd.periodic import PeriodicTask, Registry, Scheduler, TaskContext

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def context() -> TaskContext:
    return TaskContext(sessions=lambda: None)


def counter(name: str, calls: list[str], result: int = 1):
    def run(_context: TaskContext, now: datetime) -> int:
        """Count one call."""
        calls.append(name)
        return result

    return run


def test_a_task_runs_again_only_once_its_period_has_passed():
    """Every 10 minutes: due at once, not again 9 minutes later, again at 10."""
    calls: list[str] = []
    task = PeriodicTask("tick", counter("tick", calls), every=timedelta(minutes=10))
    scheduler = Scheduler([task], context())
    scheduler.run_due(NOW)
    scheduler.run_due(NOW + timedelta(minutes=9))
    scheduler.run_due(NOW + timedelta(minutes=10))
    assert calls == ["tick", "tick"]


def test_a_cron_task_is_due_at_the_next_firing():
    """`0 * * * *` run at 09:00 is next due at 10:00, not at 09:59."""
    calls: list[str] = []
    scheduler = Scheduler(
        [PeriodicTask("hourly", counter("h", calls), every="0 * * * *")], context()
    )
    scheduler.run_due(NOW)
    scheduler.run_due(NOW + timedelta(minutes=59))
    scheduler.run_due(NOW + timedelta(hours=1))
    assert len(calls) == 2


def test_a_task_without_a_period_follows_the_scheduler_interval():
    """`every=None` tasks run every `interval` (the worker's --interval)."""
    calls: list[str] = []
    task = PeriodicTask("sweep", counter("sweep", calls))
    scheduler = Scheduler([task], context(), interval=timedelta(seconds=30))
    for seconds in (0, 29, 30):
        scheduler.run_due(NOW + timedelta(seconds=seconds))
    assert len(calls) == 2


def test_a_period_from_the_settings_replaces_the_declared_one():
    """`every={name: period}` overrides what the task declared."""
    calls: list[str] = []
    task = PeriodicTask("drain", counter("drain", calls), every=timedelta(hours=1))
    scheduler = Scheduler([task], context(), every={"drain": timedelta(seconds=1)})
    scheduler.run_due(NOW)
    scheduler.run_due(NOW + timedelta(seconds=1))
    assert len(calls) == 2


def test_a_failing_task_is_logged_and_recorded_and_the_others_still_run(caplog):
    """A task that raises does not stop the next; its error is kept and it runs again."""
    calls: list[str] = []

    def broken(_context: TaskContext, now: datetime) -> int:
        raise RuntimeError("database went away")

    tasks = [PeriodicTask("broken", broken), PeriodicTask("fine", counter("fine", calls))]
    scheduler = Scheduler(tasks, context())
    with caplog.at_level(logging.ERROR, logger="policyd.periodic"):
        runs = scheduler.run_due(NOW)
    assert runs["broken"].error == "RuntimeError: database went away"
    assert runs["fine"].counts == {"fine": 1} and calls == ["fine"]
    assert "periodic task broken failed" in caplog.text
    assert "broken" in {task.name for task in scheduler.due(NOW + timedelta(seconds=5))}


def test_a_task_failing_pass_after_pass_is_logged_once_until_it_works_again(caplog):
    """The first failure has its traceback; the next ones are only recorded; the first
    success after them is one line."""
    failing = [True]

    def flaky(_context: TaskContext, now: datetime) -> int:
        if failing[0]:
            raise RuntimeError("down")
        return 0

    scheduler = Scheduler([PeriodicTask("flaky", flaky, every=timedelta(0))], context())
    with caplog.at_level(logging.INFO, logger="policyd.periodic"):
        for _ in range(3):
            scheduler.run_due(NOW)
        failing[0] = False
        scheduler.run_due(NOW)
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "flaky failed" in m]) == 1
    assert "periodic task flaky works again" in messages
    assert {record.task for record in caplog.records} == {"flaky"}


def test_each_run_is_recorded_with_its_counts_and_logged_by_name(caplog):
    """The last run of a task keeps its `now`, duration and counts; a log line names it."""
    task = PeriodicTask("guests", lambda _c, _now: {"disabled": 2, "deleted": 0})
    scheduler = Scheduler([task], context())
    with caplog.at_level(logging.INFO, logger="policyd.periodic"):
        scheduler.run_due(NOW)
    last = scheduler.last["guests"]
    assert (last.now, last.counts, last.error) == (NOW, {"disabled": 2, "deleted": 0}, None)
    assert last.seconds >= 0
    assert "periodic task guests: {'disabled': 2, 'deleted': 0}" in caplog.text
    assert [record.task for record in caplog.records] == ["guests"]


def test_the_outbox_task_runs_after_the_others_until_nothing_is_left():
    """What the other tasks queue is run in the same pass; the outbox repeats while it finds
    work (a job's success may queue another)."""
    queue: list[str] = []

    def produce(_context: TaskContext, now: datetime) -> int:
        """Queue two jobs."""
        queue.extend(["a", "b"])
        return 2

    def consume(_context: TaskContext, now: datetime) -> dict[str, int]:
        """Run one job."""
        if not queue:
            return {"jobs": 0}
        queue.pop()
        return {"jobs": 1}

    tasks = [PeriodicTask("out", consume, outbox=True), PeriodicTask("in", produce)]
    for overlap in (False, True):
        runs = Scheduler(tasks, context(), overlap=overlap).run_due(NOW)
        assert runs["out"].counts == {"jobs": 2} and queue == []


def test_beside_the_others_the_outbox_runs_once_more_after_they_finish():
    """A job queued while the outbox's pass was finding nothing still runs in this pass."""
    queue: list[str] = []
    looked, queued = threading.Event(), threading.Event()

    def produce(_context: TaskContext, now: datetime) -> int:
        looked.wait(5)
        queue.append("late")
        queued.set()
        return 1

    def consume(_context: TaskContext, now: datetime) -> dict[str, int]:
        if queue:
            queue.pop()
            return {"jobs": 1}
        looked.set()  # found nothing; the others queue their job before this pass ends
        queued.wait(5)
        return {"jobs": 0}

    tasks = [PeriodicTask("in", produce), PeriodicTask("out", consume, outbox=True)]
    runs = Scheduler(tasks, context(), overlap=True).run_due(NOW)
    assert runs["out"].counts == {"jobs": 1} and queue == []


def test_a_pass_runs_its_tasks_by_order_then_as_declared():
    """`order` puts a task after those declared later; the rest keep their order."""
    calls: list[str] = []
    tasks = [
        PeriodicTask("late", counter("late", calls), order=10),
        PeriodicTask("one", counter("one", calls)),
        PeriodicTask("two", counter("two", calls)),
    ]
    Scheduler(tasks, context()).run_due(NOW)
    assert calls == ["one", "two", "late"]


def test_run_stops_every_lane_with_stop():
    """`run(stop)` runs each lane in a thread and returns when stopped, no thread left."""
    stop = threading.Event()
    seen: list[str] = []

    def stopper(_context: TaskContext, now: datetime) -> int:
        """Stop after both lanes ran."""
        seen.append("stopper")
        return 0

    def other(_context: TaskContext, now: datetime) -> int:
        seen.append("other")
        stop.set()
        return 0

    tasks = [
        PeriodicTask("a", stopper, every=timedelta(hours=1)),
        PeriodicTask("b", other, every=timedelta(hours=1), lane="second"),
    ]
    before = threading.active_count()
    Scheduler(tasks, context()).run(stop, lambda: NOW)
    assert sorted(set(seen)) == ["other", "stopper"]
    assert threading.active_count() == before


def test_a_registry_refuses_a_second_task_of_one_name_and_keeps_the_order():
    """Names are unique; tasks list in the order they were declared."""
    registry = Registry()

    @registry.task("first", every=timedelta(minutes=1))
    def first(_context: TaskContext, now: datetime) -> int:
        """The first."""
        return 0

    registry.add(PeriodicTask("second", first))
    with pytest.raises(ValueError, match="'first' is registered already"):
        registry.add(PeriodicTask("first", first))
    assert [task.name for task in registry] == ["first", "second"]
    assert registry.tasks()[0].summary == "The first."


def test_a_bad_cron_expression_is_refused_when_declared():
    with pytest.raises(ValueError, match="not a cron expression"):
        PeriodicTask("bad", lambda _c, _n: 0, every="every tuesday")
