"""The lifecycle worker: runs outbox jobs through connectors and sweeps expired access."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from policyd.connectors.base import Connector, ConnectorError, Target
from policyd.connectors.config import Connectors
from policyd.domain import UserType
from policyd.notify import Notification, NotifyError
from policyd.notify.config import Notifiers
from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.external_users import ExternalUsers, sweep_external_users
from policyd.services.jobs import BULK_CLAIM, CLAIM_BATCH, LEASE, ClaimedJob, JobService
from policyd.services.notifications import REMINDER_OFFSETS, remind_due, render
from policyd.services.requests import RequestService
from policyd.services.versions import PolicySync
from policyd.store.models import Job, User
from policyd.store.query import among

log = logging.getLogger(__name__)
WORKER = Actor("worker", Role.ADMIN)
DELIVERY = ("grant", "revoke")  # the job kinds that change what an assignment delivered
EXPIRY_BATCH = 2000  # assignments ended per transaction by the expiry sweep
# A job's outcome: None when it succeeded, else (error message, retryable).
Outcome = tuple[str, bool] | None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def dead_here(holders: set[str]) -> set[str]:
    """The workers among `holders` that ran on this machine in a process that is gone."""
    host = socket.gethostname()
    dead = set()
    for holder in holders:
        parts = holder.rsplit(":", 2)  # host:pid:thread, as worker_id() makes it
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(holder)
        except PermissionError:
            pass  # alive, as another user
    return dead


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
    ):
        """`lease`: how long a claimed job is this worker's before another may take it (the
        heartbeat renews it while the job is in hand). `policy_sync`: keeps `runtime` on the
        active version; each sweep checks it."""
        self.sessions = sessions
        self.connectors = connectors
        self.runtime = runtime
        self.name = name or worker_id()
        self.notifiers = notifiers or Notifiers({})
        self.external_users = external_users
        self.delete_after = delete_after
        self.reminders = reminders
        self.lease = lease
        self.policy_sync = policy_sync
        self._dialect: str | None = None

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
        with self._heartbeat([job.id for job in claimed], now):
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

    @contextmanager
    def _heartbeat(self, job_ids: list[str], now: datetime) -> Iterator[None]:
        """Renew the lease of `job_ids` every third of a lease until the block ends, so no
        other worker takes them while this one works (time counts on from `now`)."""
        done = threading.Event()
        started = time.monotonic()
        beat = self.lease.total_seconds() / 3

        def renew() -> None:
            while not done.wait(beat):
                until = now + timedelta(seconds=time.monotonic() - started) + self.lease
                try:
                    with self.sessions() as session:
                        JobService(session).renew(job_ids, self.name, until=until)
                except Exception:  # the next beat tries again; a lapsed lease is safe
                    log.exception("worker %s: could not renew its job leases", self.name)

        thread = threading.Thread(target=renew, name=f"{self.name}:heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

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
        if job.id not in self._held([job.id]):
            return
        outcome = self._run(job, targets if targets is not None else self._targets([job]))
        self._record({job.id: outcome}, now)

    def _held(self, job_ids: list[str]) -> set[str]:
        with self.sessions() as session:
            return JobService(session).held(job_ids, self.name)

    def _runs_in_bulk(self, kind: str, name: str) -> bool:
        if kind == "notify":
            return self.notifiers.default() is None  # nothing to send: done at once
        if kind not in DELIVERY:
            return False
        try:
            connector = self.connectors.get(name)
        except (KeyError, ConnectorError):
            return False  # run one by one, where the job records why it failed
        return callable(getattr(connector, f"{kind}_many", None))

    def bulk_jobs(self) -> ColumnElement[bool] | None:
        """Which grant and revoke jobs run in bulk with this worker's connectors."""
        clauses = []
        for kind in DELIVERY:
            names = [name for name in self.connectors.instances if self._runs_in_bulk(kind, name)]
            if names:
                clauses.append((Job.kind == kind) & Job.connector.in_(names))
        return or_(*clauses) if clauses else None

    def _run_bulk(
        self, kind: str, name: str, jobs: list[ClaimedJob], targets: dict[str, Target]
    ) -> dict[str, Outcome]:
        """One connector call for many jobs of one kind; returns each job's outcome."""
        if kind == "notify":
            return dict.fromkeys((job.id for job in jobs), None)
        try:
            errors = getattr(self._connector(name), f"{kind}_many")(
                [targets[job.id] for job in jobs]
            )
            errors = list(errors)
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
        try:
            if job.kind == "notify":
                self._notify(job)
                return None
            connector = self._connector(job.connector)
            if job.kind in ("disable_user", "delete_user"):
                method = getattr(connector, job.kind, None)
                if method is not None:  # connectors that cannot do it skip the job
                    method(job.subject_id)
            elif job.kind == "send":
                connector.send(job.role, event_payload(job, targets[job.id]), job.id)
            else:
                getattr(connector, job.kind)(targets[job.id])
        except Exception as err:
            return self._outcome(err, job.connector, job.id)
        return None

    def _connector(self, name: str) -> Connector:
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
        """Store the outcomes of jobs this worker holds and settle their assignments, in one
        transaction. A job whose lease lapsed was taken over: the new holder's outcome
        stands."""
        with self.sessions() as session:
            jobs = JobService(session)
            done = [job_id for job_id, outcome in outcomes.items() if outcome is None]
            finished = jobs.finish_many(done, self.name, now=now)
            if len(finished) < len(done):
                lost = len(done) - len(finished)
                log.warning("%d job(s) were taken over by another worker; theirs stand", lost)
            # Grants and revokes move their assignment on; a reminder belongs to one but not.
            settle = {
                assignment_id
                for _, assignment_id, kind in finished
                if assignment_id and kind in DELIVERY
            }
            for job_id, outcome in outcomes.items():
                if outcome is None:
                    continue
                if not jobs.holds(job_id, self.name):
                    log.warning(
                        "job %s was taken over by another worker; its outcome stands", job_id
                    )
                    continue
                error, retryable = outcome
                job = jobs.fail(job_id, error, retryable=retryable, now=now)
                if job.assignment_id and job.kind in DELIVERY:
                    settle.add(job.assignment_id)
            session.flush()
            AssignmentService(session, self.runtime).settle_many(settle, WORKER, now=now)
            session.commit()

    def _notify(self, job: ClaimedJob) -> None:
        """Render and send one notification; without a notifier or an address, skip it."""
        notifier = self.notifiers.default()
        kind, _, object_id = job.resource.partition(":")
        with self.sessions() as session:
            user = session.get(User, job.subject_id)
            if notifier is None or user is None or not user.email or user.state == "deleted":
                return  # nowhere to send it, or nobody to tell (a deleted user's tombstone)
            subject, text = render(session, kind, object_id)
        notifier.send(Notification([user.email], subject, text, kind, id=job.id))

    def _targets(self, jobs: list[ClaimedJob]) -> dict[str, Target]:
        """The Target of each grant and revoke job, with the person's directory details."""
        wanted = [job for job in jobs if job.kind in (*DELIVERY, "send")]
        if not wanted:
            return {}
        with self.sessions() as session:
            users = {
                row.id: row
                for row in session.execute(
                    select(User.id, User.email, User.type, User.display_name).where(
                        among(session, User.id, {job.subject_id for job in wanted})
                    )
                )
            }
        targets = {}
        for job in wanted:
            user = users.get(job.subject_id)
            if user is None:
                targets[job.id] = Target(
                    job.subject_id, job.resource, job.role, operation_id=job.id
                )
                continue
            targets[job.id] = Target(
                user_id=user.id,
                resource=job.resource,
                role=job.role,
                email=user.email,
                user_type=UserType(user.type),
                display_name=user.display_name,
                operation_id=job.id,
            )
        return targets

    def sweep(self, *, now: datetime, batch: int = EXPIRY_BATCH) -> dict[str, int]:
        """One pass of the periodic work: time out approval stages, queue reminders and
        guest clean-up, expire every due assignment and run every due job.

        Expiry and jobs work in batches until nothing due is left. On PostgreSQL they run
        side by side (expiry in a second thread), so the revocations of a mass expiry start
        with its first batch and this process works while the database does; SQLite, with
        one writer at a time, does one after the other.
        """
        if self.policy_sync is not None:
            self.policy_sync.maybe_sync()  # follow the active version, as the API does
        released = self.release_dead(now=now)
        with self.sessions() as session:
            requests = RequestService(session, self.runtime, self.connectors.listeners())
            stages = requests.expire_stages(now=now)
        with self.sessions() as session:
            reminders = remind_due(
                session,
                now=now,
                offsets=self.reminders,
                runtime=self.runtime,
                listeners=self.connectors.listeners(),
            )
        with self.sessions() as session:
            guests = sweep_external_users(
                session, now=now, mode=self.external_users, delete_after=self.delete_after
            )
        expiry = _Expiry(self, now, batch)
        concurrent = self._concurrent()
        if concurrent:
            expiry.start()
        else:
            expiry.run()
        ran = 0
        while True:
            expiring = expiry.is_alive()
            count = self._run_due_jobs(now)
            ran += count
            if not count:
                if not expiring:
                    break
                expiry.join(timeout=0.05)  # wait for the next expiry batch's jobs
        if concurrent:
            expiry.join()
        if expiry.error is not None:
            raise expiry.error
        return {
            "expired": expiry.expired,
            "jobs": ran,
            **stages,
            "reminders": reminders,
            **guests,
            "released": released,
        }

    def expire_due(self, *, now: datetime, limit: int) -> int:
        """End up to `limit` expired assignments in one transaction; returns how many."""
        with self.sessions() as session:
            return AssignmentService(session, self.runtime).expire_due(now=now, limit=limit)

    def _run_due_jobs(self, now: datetime) -> int:
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
            return JobService(session).finish_due("notify", now=now, limit=BULK_CLAIM)

    def _concurrent(self) -> bool:
        """Whether expiry may run beside the jobs: not on SQLite (one writer at a time)."""
        if self._dialect is None:
            with self.sessions() as session:
                self._dialect = session.get_bind().dialect.name
        return self._dialect != "sqlite"

    def loop(self, stop: threading.Event, *, interval: float = 5.0) -> None:
        """Sweep every `interval` seconds until `stop` is set (policyd worker, policyd serve)."""
        while not stop.is_set():
            try:
                result = self.sweep(now=datetime.now(UTC))
                if any(result.values()):
                    log.info("worker: %s", result)
            except Exception:
                log.exception("worker sweep failed; trying again")
            stop.wait(interval)


class _Expiry(threading.Thread):
    """Expire due assignments batch by batch (in a thread of its own, or by `run()`)."""

    def __init__(self, worker: Worker, now: datetime, batch: int):
        super().__init__(name=f"{worker.name}:expiry", daemon=True)
        self.worker, self.now, self.batch = worker, now, batch
        self.expired = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                count = self.worker.expire_due(now=self.now, limit=self.batch)
                self.expired += count
                if count < self.batch:
                    return
        except BaseException as error:  # raised again by sweep() in the worker's thread
            self.error = error


def event_payload(job: ClaimedJob, target: Target) -> dict[str, Any]:
    """A lifecycle event's body after the envelope: its own fields, when it happened, the
    person and the resource (as in access.granted and access.removed)."""
    user = {
        "id": target.user_id,
        "email": target.email,
        "display_name": target.display_name,
        "type": target.user_type.value,
    }
    return {
        **(job.payload or {}),
        "occurred_at": job.created_at.isoformat(),
        "user": user,
        "resource": job.resource,
    }
