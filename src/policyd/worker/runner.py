"""The lifecycle worker: claims outbox jobs, runs them through the dispatch table, records
their outcomes; and runs the periodic tasks with one scheduler."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from policyd.connectors.base import Connector, ConnectorError, Target
from policyd.connectors.config import Connectors
from policyd.notify import NotifyError
from policyd.notify.config import Notifiers
from policyd.periodic import SWEEP, TASKS, WORKER, PeriodicTask, Scheduler, TaskContext
from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor, Role
from policyd.services.external_users import ExternalUsers
from policyd.services.job_outcomes import Outcome, record_outcomes
from policyd.services.jobs import BULK_CLAIM, CLAIM_BATCH, LEASE, ClaimedJob, JobKind, JobService
from policyd.services.messages import Messages
from policyd.services.notifications import REMINDER_OFFSETS
from policyd.services.targets import delivery_targets
from policyd.services.versions import PolicySync
from policyd.worker import dispatch
from policyd.worker.lease import dead_here, heartbeat, worker_id

log = logging.getLogger(__name__)
WORKER_ACTOR = Actor("worker", Role.ADMIN)
EXPIRY_BATCH = 2000  # assignments ended per transaction by the expiry task


class Worker:
    """Plain functions over the database; the CLI loop, the API and tests all call them."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        connectors: Connectors,
        runtime: PolicyRuntime,
        name: str | None = None,
        notifiers: Notifiers | None = None,
        external_users: ExternalUsers = ExternalUsers.NONE,
        delete_after: timedelta = timedelta(days=30),
        reminders: tuple[timedelta, ...] = REMINDER_OFFSETS,
        lease: timedelta = LEASE,
        policy_sync: PolicySync | None = None,
        *,
        tasks: Iterable[PeriodicTask] | None = None,
        process: str = WORKER,
        drainer: object = None,
        every: dict[str, timedelta] | None = None,
        decision_log_retention: int = 0,
        messages: Messages | None = None,
        approval_reminder: timedelta | None = None,
    ):
        """`lease`: how long a claimed job is this worker's before another may take it (the
        heartbeat renews it while the job is in hand). `policy_sync`: keeps `runtime` on the
        active version; each pass checks it. `tasks`: the periodic tasks (default: the
        registered ones of `process`); `drainer`: the decision-log drainer of this host;
        `every`: periods that replace the declared ones, by task name;
        `decision_log_retention`: days the decision log keeps an entry (0: all);
        `messages`: renders notifications (default: the shipped templates, no links);
        `approval_reminder`: how often approvers are reminded of a waiting request."""
        self.sessions = sessions
        self.connectors = connectors
        self.runtime = runtime
        self.name = name or worker_id()
        self.notifiers = notifiers or Notifiers({})
        self.messages = messages or Messages(runtime=runtime)
        self.lease = lease
        self.policy_sync = policy_sync
        self._dialect: str | None = None
        context = TaskContext(
            sessions=sessions,
            runtime=runtime,
            connectors=connectors,
            notifiers=self.notifiers,
            worker=self,
            drainer=drainer,
            external_users=ExternalUsers(external_users).value,
            delete_after=delete_after,
            reminders=tuple(reminders),
            approval_reminder=approval_reminder,
            expiry_batch=EXPIRY_BATCH,
            decision_log_retention=decision_log_retention,
        )
        self.scheduler = Scheduler(
            list(tasks) if tasks is not None else TASKS.tasks(process),
            context,
            every=every,
            overlap=self._concurrent,
            before_pass=self._follow_policy,
        )

    # --- the periodic tasks ---------------------------------------------------------------

    def sweep(self, *, now: datetime, batch: int = EXPIRY_BATCH) -> dict[str, int]:
        """Run every lifecycle task once at `now` (whatever their schedule): what `policyd
        worker --once` and the tests call; the counts of all of them, by name.

        The outbox task runs what the others queue, until nothing is due; on PostgreSQL
        beside them (the revocations of a mass expiry start with its first batch), on
        SQLite after them (one writer at a time). A failing task is logged, not raised.
        """
        context = replace(self.scheduler.context, expiry_batch=batch)
        runs = self.scheduler.run_due(now, lane=SWEEP, every_task=True, context=context)
        counts: dict[str, int] = {}
        for run in runs.values():
            counts.update(run.counts)
        return counts

    def configure(self, **changes: object) -> None:
        """Change what the periodic tasks are given (fields of `TaskContext`, such as
        `reminders` or `external_users`)."""
        self.scheduler.context = replace(self.scheduler.context, **changes)  # type: ignore[arg-type]

    def loop(self, stop: threading.Event, *, interval: float = 5.0) -> None:
        """Run the periodic tasks when due (those of no period every `interval` seconds)
        until `stop` is set (policyd worker, policyd serve); returns when all have ended."""
        self.scheduler.interval = timedelta(seconds=interval)
        self.scheduler.run(stop, lambda: datetime.now(UTC))

    def _follow_policy(self, lane: str) -> None:
        if lane == SWEEP and self.policy_sync is not None:
            self.policy_sync.maybe_sync()  # follow the active version, as the API does

    def _concurrent(self) -> bool:
        """Whether the outbox may run beside the other tasks: not on SQLite (one writer at
        a time)."""
        if self._dialect is None:
            with self.sessions() as session:
                self._dialect = session.get_bind().dialect.name
        return self._dialect != "sqlite"

    # --- outbox jobs ----------------------------------------------------------------------

    def run_jobs(
        self,
        *,
        now: datetime,
        limit: int = 50,
        ids: list[str] | None = None,
        where: ColumnElement[bool] | None = None,
    ) -> int:
        """Claim and run due jobs (only `ids`, or those matching `where`, when given);
        returns how many ran."""
        with self.sessions() as session:
            claimed = JobService(session).claim(
                self.name, now=now, limit=limit, ids=ids, where=where, lease=self.lease
            )
        if not claimed:
            return 0
        job_ids = [job.id for job in claimed]
        with heartbeat(self.sessions, self.name, job_ids, self.lease, now):
            targets = self._targets(claimed)
            groups: dict[tuple[str, str], list[ClaimedJob]] = defaultdict(list)
            for job in claimed:
                groups[job.kind, job.connector].append(job)
            for (kind, name), jobs in groups.items():
                if self._runs_in_bulk(kind, name):
                    # Claimed a moment ago, and the heartbeat keeps them: still held.
                    self._record(self._run_bulk(kind, name, jobs, targets), now)
                else:
                    for job in jobs:  # one at a time, each outcome committed before the next
                        self.run_one(job, now, targets)
        return len(claimed)

    def run_due_jobs(self, now: datetime) -> int:
        """Run jobs until fewer than a full claim is due; returns how many ran."""
        bulk = self.bulk_jobs()
        unsent = self.notifiers.default() is None
        ran = 0
        while True:
            in_bulk = (
                self.run_jobs(now=now, limit=BULK_CLAIM, where=bulk) if bulk is not None else 0
            )
            dropped = self._drop_notifications(now) if unsent else 0
            one_by_one = self.run_jobs(now=now, limit=CLAIM_BATCH)
            ran += in_bulk + dropped + one_by_one
            if in_bulk < BULK_CLAIM and dropped < BULK_CLAIM and one_by_one < CLAIM_BATCH:
                return ran

    def _drop_notifications(self, now: datetime) -> int:
        """With no notifier configured there is nothing to send: due notifications are done
        at once, with one statement per batch."""
        with self.sessions() as session:
            return JobService(session).finish_due(JobKind.NOTIFY, now=now, limit=BULK_CLAIM)

    def release_dead(self, *, now: datetime) -> int:
        """Queue again the jobs held by workers of this machine whose process died (a worker
        SIGKILLed and restarted), instead of leaving them until their lease lapses."""
        with self.sessions() as session:
            jobs = JobService(session)
            dead = dead_here(jobs.holders())
            released = jobs.release(dead, now=now)
        if released:
            log.warning("worker %s: took over %d job(s) of dead %s", self.name, released, dead)
        return released

    def run_one(
        self, job: ClaimedJob, now: datetime, targets: dict[str, Target] | None = None
    ) -> None:
        """Run one claimed job and record its outcome, unless its lease lapsed meanwhile
        and another worker took it over."""
        with self.sessions() as session:
            if job.id not in JobService(session).held([job.id], self.name):
                return
        outcome = self._run(job, targets if targets is not None else self._targets([job]))
        self._record({job.id: outcome}, now)

    def _runs_in_bulk(self, kind: str, name: str) -> bool:
        if kind == JobKind.NOTIFY:
            return self.notifiers.default() is None  # nothing to send: done at once
        if kind not in dispatch.RUN_MANY:
            return False
        try:
            abilities = self.connectors.abilities(name)
        except (KeyError, ConnectorError):
            return False  # run one by one, where the job records why it failed
        return dispatch.runs_in_bulk(abilities, kind)

    def bulk_jobs(self) -> ColumnElement[bool] | None:
        """Which grant and revoke jobs run in bulk with this worker's connectors."""
        kinds = {
            kind.value: [
                name for name in self.connectors.instances if self._runs_in_bulk(kind, name)
            ]
            for kind in dispatch.DELIVERY
        }
        return JobService.of(kinds) if any(kinds.values()) else None

    def _run_bulk(
        self, kind: str, name: str, jobs: list[ClaimedJob], targets: dict[str, Target]
    ) -> dict[str, Outcome]:
        """One connector call for many jobs of one kind; returns each job's outcome."""
        if kind == JobKind.NOTIFY:
            return dict.fromkeys((job.id for job in jobs), None)
        try:
            run_many = dispatch.RUN_MANY[JobKind(kind)]
            errors = list(run_many(self.connector(name), [targets[job.id] for job in jobs]))
            if len(errors) != len(jobs):
                message = f"{kind}_many returned {len(errors)} results for {len(jobs)} targets"
                raise ConnectorError(message, retryable=False)
        except Exception as err:  # the whole call failed: every job of it failed
            outcome = self._outcome(err, name)
            return dict.fromkeys((job.id for job in jobs), outcome)
        return {
            job.id: None if error is None else self._outcome(error, name)
            for job, error in zip(jobs, errors, strict=True)
        }

    def _run(self, job: ClaimedJob, targets: dict[str, Target]) -> Outcome:
        """Run one job with the function the dispatch table names for its kind."""
        try:
            dispatch.RUN[dispatch.kind_of(job)](self, job, targets)
        except Exception as err:
            return self._outcome(err, job.connector, job.id)
        return None

    def connector(self, name: str) -> Connector:
        """The connector instance `name`.

        Raises:
            ConnectorError: none of that name is configured (not retryable).
        """
        try:
            return self.connectors.get(name)
        except KeyError:
            message = f"no connector instance {name!r} is configured"
            raise ConnectorError(message, retryable=False) from None

    @staticmethod
    def _outcome(err: Exception, connector: str, job_id: str | None = None) -> Outcome:
        """(error message, retryable) of a failed job."""
        if isinstance(err, ConnectorError | NotifyError):
            return str(err), err.retryable
        # A failing plugin must not stop the worker: the job fails and is retried.
        log.error("connector %s failed on job %s", connector, job_id, exc_info=err)
        return f"{type(err).__name__}: {err}", True

    def _record(self, outcomes: dict[str, Outcome], now: datetime) -> None:
        """Store the outcomes of jobs this worker holds and settle their assignments."""
        record_outcomes(
            self.sessions,
            self.runtime,
            self.name,
            outcomes,
            delivery=dispatch.DELIVERY,
            actor=WORKER_ACTOR,
            now=now,
        )

    def _targets(self, jobs: list[ClaimedJob]) -> dict[str, Target]:
        """The Target of each grant, revoke and event job, with the person's details."""
        wanted = [job for job in jobs if job.kind in dispatch.TARGETED]
        if not wanted:
            return {}
        with self.sessions() as session:
            return delivery_targets(session, wanted)
