"""Periodic tasks: declared beside the domain code that owns them, run by one `Scheduler`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from croniter import croniter

from policyd.logs import Outage

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

SWEEP = "sweep"  # the lane of the lifecycle tasks; a lane is a thread of `Scheduler.run`
WORKER, SERVE = "worker", "serve"  # the process kinds that run a scheduler
# A count of what a run did: an int (reported under the task's name) or named counts.
Counts = int | Mapping[str, int]


@dataclass(frozen=True)
class TaskContext:
    """What a task may use: the process's sessions and what its worker was built with.

    Tasks take what they need and ignore the rest, so a new field breaks no task.
    """

    sessions: Callable[[], Session]
    runtime: Any = None  # rules.PolicyRuntime, on the active policy version
    connectors: Any = None  # connectors.config.Connectors
    notifiers: Any = None  # notify.config.Notifiers
    worker: Any = None  # worker.Worker: runs outbox jobs
    drainer: Any = None  # services.decision_log.Drainer of this host's spool, if any
    external_users: str = "none"  # POLICYD_EXTERNAL_USERS
    delete_after: timedelta = timedelta(days=30)  # POLICYD_EXTERNAL_DELETE_AFTER
    reminders: tuple[timedelta, ...] = ()  # POLICYD_REMINDERS
    approval_reminder: timedelta | None = None  # POLICYD_APPROVAL_REMINDER
    expiry_batch: int = 2000  # assignments ended per transaction
    decision_log_retention: int = 0  # POLICYD_DECISION_LOG_RETENTION, days (0: keep all)


@dataclass(frozen=True)
class PeriodicTask:
    """A function of `(context, now)` run every `every` (a timedelta, a cron expression, or
    None: each pass of the worker, `policyd worker --interval`).

    `lane`: tasks of one lane run one after another in one thread (the drain of the decision
    log has its own, so a long sweep never holds it up). `outbox`: the task runs what the
    others queue; in a pass it runs after them, and again until nothing is due (on a database
    with several writers, beside them). `order`: a pass runs its tasks by `order`, then in
    the order declared (which depends on import order, so a task that must come later says
    so). `processes`: which process kinds run it.
    """

    name: str
    run: Callable[[TaskContext, datetime], Counts]
    every: timedelta | str | None = None
    lane: str = SWEEP
    outbox: bool = False
    order: int = 0
    processes: frozenset[str] = frozenset({WORKER, SERVE})

    def __post_init__(self) -> None:
        if isinstance(self.every, str) and not croniter.is_valid(self.every):
            raise ValueError(f"periodic task {self.name}: {self.every!r} is not a cron expression")
        if isinstance(self.every, timedelta) and self.every < timedelta(0):
            raise ValueError(f"periodic task {self.name}: a negative period")

    @property
    def summary(self) -> str:
        """The first line of the task function's docstring."""
        return (self.run.__doc__ or "").strip().splitlines()[0] if self.run.__doc__ else ""

    def next_run(self, after: datetime, default: timedelta) -> datetime:
        """When the task is due next after a run at `after`."""
        if isinstance(self.every, str):
            return croniter(self.every, after).get_next(datetime)
        return after + (self.every if self.every is not None else default)


class Registry:
    """Periodic tasks by name, in the order they were declared (a pass runs them so)."""

    def __init__(self, tasks: Iterable[PeriodicTask] = ()):
        self._tasks: dict[str, PeriodicTask] = {}
        for task in tasks:
            self.add(task)

    def add(self, task: PeriodicTask) -> PeriodicTask:
        """Register `task`.

        Raises:
            ValueError: a task of that name is registered already.
        """
        if task.name in self._tasks:
            raise ValueError(f"a periodic task named {task.name!r} is registered already")
        self._tasks[task.name] = task
        return task

    def task(self, name: str, **options: Any) -> Callable[[Callable], Callable]:
        """Decorator: register the function as the periodic task `name` (options as in
        `PeriodicTask`); the function itself is returned unchanged."""

        def register(run: Callable[[TaskContext, datetime], Counts]) -> Callable:
            self.add(PeriodicTask(name, run, **options))
            return run

        return register

    def tasks(self, process: str | None = None) -> list[PeriodicTask]:
        """The tasks (of one process kind), in declaration order."""
        return [t for t in self._tasks.values() if process is None or process in t.processes]

    def __iter__(self):
        return iter(self.tasks())

    def __len__(self) -> int:
        return len(self._tasks)


# The built-in tasks: each domain module registers its own with `@periodic_task(...)`.
TASKS = Registry()
periodic_task = TASKS.task


@dataclass
class TaskRun:
    """The last run of a task: when (its `now`), how long, what it counted or why it failed."""

    name: str
    now: datetime
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    ended: float = 0.0  # wall clock (time.time()) at its end


class Scheduler:
    """Runs due tasks: `run_due(now)` once (tests, `policyd worker --once`), or `run(stop)`
    with a thread per lane until `stop` is set. A failing task is logged and recorded, and
    runs again when next due; it never stops the others.

    Args:
        interval: the period of tasks declared with `every=None`.
        every: periods that replace the declared ones, by task name (from settings).
        overlap: the database takes several writers at once, so the outbox task may run
            beside the others (PostgreSQL); otherwise after them (SQLite).
        before_pass: called with the lane's name before each pass (the worker follows the
            active policy version there).
    """

    def __init__(
        self,
        tasks: Sequence[PeriodicTask],
        context: TaskContext,
        *,
        interval: timedelta = timedelta(seconds=5),
        every: Mapping[str, timedelta] | None = None,
        overlap: bool | Callable[[], bool] = False,
        before_pass: Callable[[str], None] | None = None,
    ):
        overrides = every or {}
        self.tasks = [
            replace(t, every=overrides[t.name]) if t.name in overrides else t
            for t in sorted(tasks, key=lambda task: task.order)
        ]
        self.context = context
        self.interval = interval
        self._overlap = overlap
        self.before_pass = before_pass
        self.last: dict[str, TaskRun] = {}
        self._next: dict[str, datetime] = {}
        self._outages = {task.name: _outage(task.name) for task in self.tasks}
        self._lock = threading.Lock()

    def lanes(self) -> list[str]:
        return list(dict.fromkeys(task.lane for task in self.tasks))

    def due(self, now: datetime, lane: str | None = None) -> list[PeriodicTask]:
        """The tasks (of `lane`) whose time has come at `now`."""
        return [
            task
            for task in self.tasks
            if (lane is None or task.lane == lane)
            and (task.name not in self._next or self._next[task.name] <= now)
        ]

    def run_due(
        self,
        now: datetime,
        *,
        lane: str | None = None,
        every_task: bool = False,
        context: TaskContext | None = None,
    ) -> dict[str, TaskRun]:
        """Run the due tasks of `lane` (all of them with `every_task`) at `now`, with
        `context` (or the scheduler's); their runs by name."""
        context = context or self.context
        if self.before_pass is not None:
            for each in [lane] if lane else self.lanes():
                self.before_pass(each)
        tasks = [t for t in self.tasks if lane is None or t.lane == lane] if every_task else None
        chosen = tasks if tasks is not None else self.due(now, lane)
        others = [task for task in chosen if not task.outbox]
        outbox = [task for task in chosen if task.outbox]
        runs: dict[str, TaskRun] = {}
        if outbox and others and self.overlap():
            producing = threading.Thread(
                target=self._run_all,
                args=(others, now, context, runs),
                name="periodic-tasks",
                daemon=True,
            )
            producing.start()
            self._drain_outbox(outbox, now, context, runs, producing)
            producing.join()
        else:
            self._run_all(others, now, context, runs)
            self._drain_outbox(outbox, now, context, runs, None)
        return runs

    def overlap(self) -> bool:
        return self._overlap() if callable(self._overlap) else self._overlap

    def _run_all(
        self, tasks: list[PeriodicTask], now: datetime, context: TaskContext, runs: dict
    ) -> None:
        for task in tasks:
            runs[task.name] = self.run_task(task, now, context)

    def _drain_outbox(
        self,
        tasks: list[PeriodicTask],
        now: datetime,
        context: TaskContext,
        runs: dict,
        producing: threading.Thread | None,
    ) -> None:
        """Run each outbox task until a pass finds nothing (what a job's success queues,
        such as a notice, runs in the same pass) and the others have finished."""
        for task in tasks:
            total: TaskRun | None = None
            while True:
                # A pass that finds nothing ends it only if the others had finished before it.
                finished = producing is None or not producing.is_alive()
                run = self.run_task(task, now, context)
                total = run if total is None else _merged(total, run)
                if run.error is not None:
                    break  # tried again at the next pass
                if any(run.counts.values()):
                    continue
                if finished:
                    break
                producing.join(timeout=0.05)  # wait for what the others queue next
            runs[task.name] = total
            with self._lock:
                self.last[task.name] = total

    def run_task(
        self, task: PeriodicTask, now: datetime, context: TaskContext | None = None
    ) -> TaskRun:
        """Run one task at `now`, isolated: an exception is logged and recorded."""
        started = time.monotonic()
        try:
            result = task.run(context or self.context, now)
        except Exception as err:  # a failing task must not stop the others
            self._outages.setdefault(task.name, _outage(task.name)).failed()
            run = TaskRun(task.name, now, time.monotonic() - started, {}, _reason(err))
        else:
            self._outages.setdefault(task.name, _outage(task.name)).succeeded()
            counts = {task.name: result} if isinstance(result, int) else dict(result)
            run = TaskRun(task.name, now, time.monotonic() - started, counts)
            level = logging.INFO if any(counts.values()) else logging.DEBUG
            log.log(level, "periodic task %s: %s", task.name, counts, extra={"task": task.name})
        run.ended = time.time()
        with self._lock:
            self.last[task.name] = run
            self._next[task.name] = task.next_run(now, self.interval)
        return run

    def run(self, stop: threading.Event, clock: Callable[[], datetime]) -> None:
        """Run due tasks, a thread per lane, until `stop` is set; every thread has ended
        when this returns."""
        threads = [
            threading.Thread(
                target=self._lane, args=(lane, stop, clock), name=f"periodic-{lane}", daemon=True
            )
            for lane in self.lanes()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _lane(self, lane: str, stop: threading.Event, clock: Callable[[], datetime]) -> None:
        while not stop.is_set():
            try:
                self.run_due(clock(), lane=lane)
            except Exception:  # the scheduler's own bug: log it and keep the lane alive
                log.exception("periodic tasks of lane %s failed; trying again", lane)
            stop.wait(self._wait(lane, clock()))

    def _wait(self, lane: str, now: datetime) -> float:
        """Seconds until the next task of `lane` is due (at least a millisecond)."""
        upcoming = [self._next.get(t.name, now) for t in self.tasks if t.lane == lane]
        return max(0.001, (min(upcoming, default=now) - now).total_seconds())


def _merged(total: TaskRun, run: TaskRun) -> TaskRun:
    """Two runs of one task in one pass as one: times and counts added, the last error."""
    counts = {
        key: total.counts.get(key, 0) + run.counts.get(key, 0)
        for key in {**total.counts, **run.counts}
    }
    return replace(run, now=total.now, seconds=total.seconds + run.seconds, counts=counts)


def _outage(name: str) -> Outage:
    """A task's failures: the first logged with its traceback, its recovery once."""
    logger: Any = logging.LoggerAdapter(log, {"task": name})
    return Outage(
        logger,
        f"periodic task {name} failed; it runs again when next due (until it works, "
        "further failures are only recorded)",
        f"periodic task {name} works again",
    )


def _reason(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


__all__ = [
    "SERVE",
    "SWEEP",
    "TASKS",
    "WORKER",
    "PeriodicTask",
    "Registry",
    "Scheduler",
    "TaskContext",
    "TaskRun",
    "periodic_task",
]
