"""The worker's own periodic tasks: take over the jobs of dead workers, run due jobs."""

from __future__ import annotations

from datetime import datetime

from policyd.periodic import TaskContext, periodic_task


@periodic_task("jobs.release-dead")
def release_dead_jobs(context: TaskContext, now: datetime) -> dict[str, int]:
    """Queue again the jobs of workers on this machine whose process died."""
    return {"released": context.worker.release_dead(now=now)}


@periodic_task("jobs.run-due", outbox=True)
def run_due_jobs(context: TaskContext, now: datetime) -> dict[str, int]:
    """Run due outbox jobs: grants, revokes, notifications, events, guest clean-up."""
    return {"jobs": context.worker.run_due_jobs(now)}
