"""The lifecycle worker: runs outbox jobs through connectors and sweeps expired access."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from policyd.connectors.base import ConnectorError, Target
from policyd.connectors.config import Connectors, Notifiers
from policyd.domain import UserType
from policyd.notify import Notification, NotifyError
from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.external_users import ExternalUsers, sweep_external_users
from policyd.services.jobs import CLAIM_BATCH, JobService
from policyd.services.notifications import remind_due, render
from policyd.services.requests import RequestService
from policyd.store.models import Assignment, Job, User

log = logging.getLogger(__name__)
WORKER = Actor("worker", Role.ADMIN)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


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
    ):
        self.sessions = sessions
        self.connectors = connectors
        self.runtime = runtime
        self.name = name or worker_id()
        self.notifiers = notifiers or Notifiers({})
        self.external_users = external_users
        self.delete_after = delete_after

    def run_jobs(self, *, now: datetime, limit: int = 50, ids: list[str] | None = None) -> int:
        """Claim and run due jobs (only `ids` when given); returns how many ran."""
        with self.sessions() as session:
            claimed = JobService(session).claim(self.name, now=now, limit=limit, ids=ids)
        for job in claimed:
            self._run(job, now)
        return len(claimed)

    def _run(self, job: Job, now: datetime) -> None:
        with self.sessions() as session:
            if not JobService(session).holds(job.id, self.name):
                return  # its lease lapsed and another worker took it over
        error: str | None = None
        retryable = True
        try:
            if job.kind == "notify":
                self._notify(job)
            elif job.kind in ("disable_user", "delete_user"):
                method = getattr(self.connectors.get(job.connector), job.kind, None)
                if method is not None:  # connectors that cannot do it skip the job
                    method(job.subject_id)
            else:
                connector = self.connectors.get(job.connector)
                getattr(connector, job.kind)(self._target(job))
        except KeyError:
            error, retryable = f"no connector instance {job.connector!r} is configured", False
        except (ConnectorError, NotifyError) as err:
            error, retryable = str(err), err.retryable
        except Exception as err:  # a failing plugin must not stop the worker
            log.exception("connector %s failed on job %s", job.connector, job.id)
            error = f"{type(err).__name__}: {err}"
        with self.sessions() as session:
            jobs = JobService(session)
            if not jobs.holds(job.id, self.name):
                log.warning("job %s was taken over by another worker; its outcome stands", job.id)
                return
            if error is None:
                jobs.finish(job.id, now=now)
            else:
                jobs.fail(job.id, error, retryable=retryable, now=now)
            session.flush()
            if job.assignment_id:
                assignment = session.get(Assignment, job.assignment_id, with_for_update=True)
                if assignment is not None:
                    AssignmentService(session, self.runtime).settle(assignment, WORKER, now=now)
            session.commit()

    def _notify(self, job: Job) -> None:
        """Render and send one notification; without a notifier or an address, skip it."""
        notifier = self.notifiers.default()
        kind, _, object_id = job.resource.partition(":")
        with self.sessions() as session:
            user = session.get(User, job.subject_id)
            if notifier is None or user is None or not user.email:
                return
            subject, text = render(session, kind, object_id)
        notifier.send(Notification([user.email], subject, text, kind, id=job.id))

    def _target(self, job: Job) -> Target:
        with self.sessions() as session:
            user = session.get(User, job.subject_id)
            if user is None:
                return Target(job.subject_id, job.resource, job.role, operation_id=job.id)
            return Target(
                user_id=user.id,
                resource=job.resource,
                role=job.role,
                email=user.email,
                user_type=UserType(user.type),
                display_name=user.display_name,
                operation_id=job.id,
            )

    def sweep(self, *, now: datetime, batch: int = 500) -> dict[str, int]:
        """One pass of the periodic work: time out approval stages, expire every due
        assignment, then run due jobs.

        Both steps work in batches until nothing due is left.
        """
        expired = ran = 0
        with self.sessions() as session:
            stages = RequestService(session, self.runtime).expire_stages(now=now)
        with self.sessions() as session:
            reminders = remind_due(session, now=now)
        with self.sessions() as session:
            guests = sweep_external_users(
                session, now=now, mode=self.external_users, delete_after=self.delete_after
            )
        while True:
            with self.sessions() as session:
                count = AssignmentService(session, self.runtime).expire_due(now=now, limit=batch)
            expired += count
            if count < batch:
                break
        while True:
            count = self.run_jobs(now=now, limit=CLAIM_BATCH)
            ran += count
            if count < CLAIM_BATCH:
                break
        return {"expired": expired, "jobs": ran, **stages, "reminders": reminders, **guests}

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
