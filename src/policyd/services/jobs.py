"""The outbox: grant and revoke jobs, claimed by workers, retried with backoff."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Row, exists, false, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from policyd.domain import AssignmentState, JobState, transition
from policyd.services.actor import Actor
from policyd.services.audit import audit
from policyd.services.errors import ConflictError, NotFoundError
from policyd.services.listing import list_page
from policyd.store.models import Assignment, Job
from policyd.store.query import among, insert_many, unindexed
from policyd.store.types import new_id


class JobKind(StrEnum):
    """What a job does; the worker runs each kind with the function its table names."""

    GRANT = "grant"  # deliver access
    REVOKE = "revoke"  # remove it
    NOTIFY = "notify"  # tell a person (a notifier sends it)
    SEND = "send"  # deliver a lifecycle event to a connector that takes them
    DISABLE_USER = "disable_user"  # clean up after a guest
    DELETE_USER = "delete_user"


KINDS = tuple(kind.value for kind in JobKind)
MAX_ATTEMPTS = 8
BASE_DELAY = timedelta(seconds=5)
MAX_DELAY = timedelta(hours=1)
# A claimed job whose worker died is claimed again once its lease lapses
# (POLICYD_JOB_LEASE). A live worker renews the leases of the jobs in its hands (a heartbeat
# every third of a lease), so a slow batch never loses its jobs to another worker, and a
# dead worker's jobs wait one lease at most.
LEASE = timedelta(minutes=1)
# Jobs a worker claims at once, run one by one with each outcome committed.
CLAIM_BATCH = 20
# Jobs of connectors that work in bulk (one call for many targets, e.g. the directory) and
# notifications with no notifier to send them are claimed this many at once.
BULK_CLAIM = 2000
# Assignments whose failed grants may run again: access granted or being granted.
_LIVE = (AssignmentState.DELIVERING, AssignmentState.ACTIVE, AssignmentState.FAILED)


# A revoke waits while the grant it undoes is running (in a worker that took it before the
# access ended): run first, the grant would put back what the revoke took away.
_RUNNING_GRANT = aliased(Job)
_REVOKE_WAITS = (Job.kind == "revoke") & (
    exists()
    .where(
        _RUNNING_GRANT.assignment_id == Job.assignment_id,
        # Found through its assignment (ix_jobs_assignment_id), never by reading every
        # running job, or every grant of the resource, once per queued job (as statistics
        # from before a mass expiry may plan it: query.unindexed).
        unindexed(_RUNNING_GRANT.kind) == "grant",
        unindexed(_RUNNING_GRANT.state) == JobState.RUNNING,
        _RUNNING_GRANT.connector == Job.connector,
        _RUNNING_GRANT.resource == Job.resource,
        _RUNNING_GRANT.role == Job.role,
    )
    .correlate(Job)
)

# A claimed job: its row's columns as plain attributes (job.id, job.kind, ...), read-only.
ClaimedJob = Row[Any]


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter: up to BASE_DELAY * 2**(attempts-1), capped."""
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** max(0, attempts - 1)))
    return ceiling * (rng or random).uniform(0.5, 1.0)


def job_view(job: Job) -> dict[str, Any]:
    return {"state": job.state, "attempts": job.attempts, "last_error": job.last_error}


class JobService:
    def __init__(self, session: Session):
        self.session = session

    def enqueue(
        self,
        kind: str,
        connector: str,
        resource: str,
        role: str,
        subject_id: str,
        *,
        assignment_id: str | None,
        now: datetime,
    ) -> Job:
        """Add a job to the session; the caller's commit makes it durable with the change."""
        job = Job(
            id=new_id(),
            kind=kind,
            connector=connector,
            resource=resource,
            role=role,
            subject_id=subject_id,
            assignment_id=assignment_id,
            state=JobState.QUEUED,
            attempts=0,
            max_attempts=MAX_ATTEMPTS,
            run_at=now,
            created_at=now,
        )
        self.session.add(job)
        # Lets the API run just these jobs right after its commit (inline delivery).
        self.session.info.setdefault("enqueued", []).append(job.id)
        return job

    def enqueue_many(self, jobs: Iterable[dict[str, Any]], *, now: datetime) -> list[str]:
        """Insert many jobs with one statement; each names kind, connector, resource, role,
        subject_id and assignment_id, and may set max_attempts. Returns their ids."""
        rows = [
            {
                "id": new_id(),
                "state": JobState.QUEUED,
                "attempts": 0,
                "max_attempts": MAX_ATTEMPTS,
                "run_at": now,
                "created_at": now,
                **job,
            }
            for job in jobs
        ]
        if not rows:
            return []
        self.session.flush()
        insert_many(self.session, Job, rows)
        ids = [row["id"] for row in rows]
        self.session.info.setdefault("enqueued", []).extend(ids)
        return ids

    def claim(
        self,
        worker: str,
        *,
        now: datetime,
        limit: int = 50,
        ids: list[str] | None = None,
        where: ColumnElement[bool] | None = None,
        lease: timedelta = LEASE,
    ) -> list[ClaimedJob]:
        """Atomically take up to `limit` due jobs for `worker`, each for `lease`, and commit
        the claim.

        Due: queued with run_at <= now, or running with an expired lease (its worker died).
        On PostgreSQL concurrent workers skip each other's rows (FOR UPDATE SKIP LOCKED);
        SQLite serialises writers, so the single UPDATE is atomic there too.
        """
        claimed: list[ClaimedJob] = []
        # Two scans, each in index order ((state, run_at)) with no sort of the whole queue:
        # jobs whose worker died first, then queued jobs, oldest first.
        for source, due in (
            (
                JobState.RUNNING,
                select(Job.id)
                .where(Job.state == JobState.RUNNING, Job.locked_until < now)
                .order_by(Job.run_at),
            ),
            (
                JobState.QUEUED,
                select(Job.id)
                .where(Job.state == JobState.QUEUED, Job.run_at <= now, ~_REVOKE_WAITS)
                .order_by(Job.run_at),
            ),
        ):
            if ids is not None:
                due = due.where(among(self.session, Job.id, ids))
            if where is not None:
                due = due.where(where)
            due = due.limit(limit - len(claimed)).with_for_update(skip_locked=True)
            jobs = Job.__table__
            claimed += self.session.execute(
                update(jobs)
                .where(jobs.c.id.in_(due.scalar_subquery()))
                .values(
                    state=transition(source, JobState.RUNNING),
                    locked_by=worker,
                    locked_until=now + lease,
                    attempts=jobs.c.attempts + 1,
                )
                .returning(*jobs.c)
            ).all()
            if len(claimed) >= limit:
                break
        self.session.commit()
        return list(claimed)

    def renew(self, job_ids: Sequence[str], worker: str, *, until: datetime) -> int:
        """Extend the lease of the jobs of `job_ids` that `worker` still holds, and commit;
        returns how many (a worker's heartbeat)."""
        result = self.session.execute(
            update(Job)
            .where(among(self.session, Job.id, job_ids))
            .where(unindexed(Job.state) == JobState.RUNNING, Job.locked_by == worker)
            .values(locked_until=until),
            execution_options={"synchronize_session": False},
        )
        self.session.commit()
        return result.rowcount

    def holders(self) -> set[str]:
        """The workers that hold running jobs now."""
        query = select(Job.locked_by).where(Job.state == JobState.RUNNING).distinct()
        return {holder for holder in self.session.scalars(query) if holder}

    def release(self, workers: Iterable[str], *, now: datetime) -> int:
        """Queue again, due now, the running jobs of `workers`, which are known to be dead
        (a worker on this machine whose process is gone); commits and returns how many."""
        workers = sorted(workers)
        if not workers:
            return 0
        result = self.session.execute(
            update(Job)
            .where(Job.state == JobState.RUNNING, Job.locked_by.in_(workers))
            .values(
                state=transition(JobState.RUNNING, JobState.QUEUED),
                run_at=now,
                locked_by=None,
                locked_until=None,
            ),
            execution_options={"synchronize_session": False},
        )
        self.session.commit()
        return result.rowcount

    def finish_due(self, kind: str, *, now: datetime, limit: int) -> int:
        """Mark up to `limit` due jobs of `kind` done without running them, and commit;
        returns how many (notifications when no notifier is configured)."""
        due = (
            select(Job.id)
            .where(Job.state == JobState.QUEUED, Job.run_at <= now, Job.kind == kind)
            .order_by(Job.run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        jobs = Job.__table__
        result = self.session.execute(
            update(jobs)
            .where(jobs.c.id.in_(due.scalar_subquery()))
            .values(
                state=transition(JobState.QUEUED, JobState.DONE),
                finished_at=now,
                attempts=jobs.c.attempts + 1,
            )
        )
        self.session.commit()
        return result.rowcount

    def holds(self, job_id: str, worker: str) -> bool:
        """Whether `worker` still holds the job's lease (another worker may have taken over
        a job whose lease ran out; then only the new holder records the outcome)."""
        job = self._get(job_id, lock=True)
        return job.state == JobState.RUNNING and job.locked_by == worker

    def held(self, job_ids: Sequence[str], worker: str) -> set[str]:
        """Which of `job_ids` `worker` still holds (`holds` for many, without locking)."""
        query = select(Job.id).where(
            among(self.session, Job.id, job_ids),
            unindexed(Job.state) == JobState.RUNNING,
            Job.locked_by == worker,
        )
        return set(self.session.scalars(query))

    def finish(self, job_id: str, *, now: datetime) -> Job:
        job = self._get(job_id, lock=True)
        job.state, job.finished_at = transition(job.state, JobState.DONE), now
        job.locked_by = job.locked_until = None
        job.last_error = None
        return job

    def finish_many(
        self, job_ids: Sequence[str], worker: str, *, now: datetime
    ) -> list[tuple[str, str | None, str]]:
        """Mark done every job of `job_ids` that `worker` still holds.

        Returns:
            (job id, assignment id, kind) of the jobs marked done; a job missing from it was
            taken over by another worker after its lease lapsed, and that worker's outcome
            stands.
        """
        if not job_ids:
            return []
        rows = self.session.execute(
            update(Job)
            .where(among(self.session, Job.id, job_ids))
            .where(unindexed(Job.state) == JobState.RUNNING, Job.locked_by == worker)
            .values(state=transition(JobState.RUNNING, JobState.DONE), finished_at=now)
            .values(locked_by=None, locked_until=None)
            .values(last_error=None)
            .returning(Job.id, Job.assignment_id, Job.kind),
            execution_options={"synchronize_session": False},
        )
        return [(job_id, assignment_id, kind) for job_id, assignment_id, kind in rows]

    def fail(self, job_id: str, error: str, *, retryable: bool, now: datetime) -> Job:
        """Record a failed attempt: back off and retry, or give up after max_attempts."""
        job = self._get(job_id, lock=True)
        job.last_error = error[:2000]
        job.locked_by = job.locked_until = None
        if retryable and job.attempts < job.max_attempts:
            job.state = transition(job.state, JobState.QUEUED)
            job.run_at = now + backoff(job.attempts)
        else:
            job.state, job.finished_at = transition(job.state, JobState.FAILED), now
        return job

    def retry(self, actor: Actor, job_id: str, *, now: datetime) -> Job:
        """Put a failed job back in the queue, with a fresh set of attempts; commits."""
        job = self._get(job_id, lock=True)
        if job.state != JobState.FAILED:
            raise ConflictError(f"job is {job.state}; only failed jobs are retried", field="state")
        if job.kind == "grant" and job.assignment_id:
            state = self.session.scalar(
                select(Assignment.state).where(Assignment.id == job.assignment_id)
            )
            if state not in _LIVE:
                raise ConflictError(
                    f"its assignment is {state}: access that ended is not granted again",
                    field="state",
                )
        before = job_view(job)
        job.state = transition(job.state, JobState.QUEUED)
        job.run_at, job.finished_at = now, None
        job.max_attempts = job.attempts + MAX_ATTEMPTS
        audit(
            self.session,
            actor,
            "job.retried",
            ("job", job.id),
            now=now,
            before=before,
            after=job_view(job),
        )
        # Lets the API run it right after the commit (inline delivery), as for a new job.
        self.session.info.setdefault("enqueued", []).append(job.id)
        self.session.commit()
        return job

    def _get(self, job_id: str, *, lock: bool = False) -> Job:
        job = self.session.get(Job, job_id, with_for_update=lock or None)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}", field="id")
        return job

    def get(self, job_id: str) -> Job:
        return self._get(job_id)

    @staticmethod
    def of(kinds: dict[str, list[str]]) -> ColumnElement[bool]:
        """A claim filter: jobs of each kind for the connectors listed for it."""
        clauses = [
            (Job.kind == kind) & Job.connector.in_(names) for kind, names in kinds.items() if names
        ]
        return or_(*clauses) if clauses else false()

    def backlog(self) -> int:
        query = select(func.count()).where(Job.state.in_((JobState.QUEUED, JobState.RUNNING)))
        return self.session.scalar(query) or 0

    def list(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        assignment: str | None = None,
        after: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[Job], int | None]:
        query = select(Job)
        if state:
            query = query.where(Job.state == state)
        if kind:
            query = query.where(Job.kind == kind)
        if assignment:
            query = query.where(Job.assignment_id == assignment)
        query = query.order_by(Job.created_at, Job.id)
        return list_page(self.session, query, after=after, offset=offset, limit=limit)
