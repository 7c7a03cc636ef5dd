"""What a worker's jobs came to: stored, and their assignments settled, in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor
from policyd.services.assignments import AssignmentService
from policyd.services.jobs import JobService

log = logging.getLogger(__name__)

# A job's outcome: None when it succeeded, else (error message, retryable).
Outcome = tuple[str, bool] | None


def record_outcomes(
    sessions: Callable[[], Session],
    runtime: PolicyRuntime,
    holder: str,
    outcomes: Mapping[str, Outcome],
    *,
    delivery: Collection[str],
    actor: Actor,
    now: datetime,
) -> None:
    """Store the outcomes of jobs `holder` holds and settle the assignments of its `delivery`
    kinds (grants and revokes; a reminder belongs to an assignment but does not move it), in
    one transaction. A job whose lease lapsed was taken over: the new holder's outcome
    stands."""
    with sessions() as session:
        jobs = JobService(session)
        done = [job_id for job_id, outcome in outcomes.items() if outcome is None]
        finished = jobs.finish_many(done, holder, now=now)
        if len(finished) < len(done):
            lost = len(done) - len(finished)
            log.warning("%d job(s) were taken over by another worker; theirs stand", lost)
        settle = {
            assignment_id
            for _, assignment_id, kind in finished
            if assignment_id and kind in delivery
        }
        for job_id, outcome in outcomes.items():
            if outcome is None:
                continue
            if not jobs.holds(job_id, holder):
                log.warning("job %s was taken over by another worker; its outcome stands", job_id)
                continue
            error, retryable = outcome
            job = jobs.fail(job_id, error, retryable=retryable, now=now)
            if job.assignment_id and job.kind in delivery:
                settle.add(job.assignment_id)
        session.flush()
        AssignmentService(session, runtime).settle_many(settle, actor, now=now)
        session.commit()
