"""Approvers reminded of requests that wait for them, every interval the package or the
service sets, until the stage is decided, escalated or times out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import RequestState
from policyd.periodic import TaskContext, periodic_task
from policyd.services.jobs import JobService
from policyd.services.notifications import notification_job
from policyd.store.models import AccessRequest, Job
from policyd.store.query import among

KIND = "approval_reminder"
BATCH = 500  # waiting requests read at once


def remind_approvers(
    session: Session, *, now: datetime, interval: timedelta | None, bundle: Any = None
) -> int:
    """Queue a reminder to the approvers of each waiting stage once per `interval` since the
    stage began (a package's own `reminders.approval` instead, where it sets one); missed
    intervals are not made up. Returns how many reminders were queued. Idempotent.

    A reminder is keyed by its stage, when the stage began and how many intervals have
    passed, so an escalated stage (which begins again) counts afresh.
    """
    own = {
        pid: policy.approval
        for pid, policy in (bundle.reminders if bundle else {}).items()
        if policy.approval is not None
    }
    if interval is None and not own:
        return 0
    query = select(AccessRequest).where(AccessRequest.state == RequestState.PENDING_APPROVAL)
    if interval is None:  # only the packages that set their own
        query = query.where(AccessRequest.package.in_(sorted(own)))
    queued, after = 0, ""
    while True:
        requests = session.scalars(
            query.where(AccessRequest.id > after).order_by(AccessRequest.id).limit(BATCH)
        ).all()
        if not requests:
            break
        due = {}
        for request in requests:
            key = _due_key(request, own.get(request.package, interval), now)
            if key is not None:
                due[f"{KIND}:{request.id}"] = (key, request)
        sent = set()
        if due:
            query_sent = select(Job.resource, Job.role).where(
                Job.kind == "notify", among(session, Job.resource, list(due))
            )
            sent = {(resource, key) for resource, key in session.execute(query_sent)}
        jobs = [
            notification_job(KIND, request.id, approver, key=key)
            for resource, (key, request) in due.items()
            if (resource, key) not in sent
            for approver in request.stages[request.stage - 1]["approvers"]
        ]
        JobService(session).enqueue_many(jobs, now=now)
        queued += len(jobs)
        after = requests[-1].id
    session.commit()
    return queued


def _due_key(request: AccessRequest, interval: timedelta | None, now: datetime) -> str | None:
    """The key of the reminder due now for the request's current stage, if one is."""
    if interval is None or not request.stage or interval <= timedelta(0):
        return None
    stage = request.stages[request.stage - 1]
    started = datetime.fromisoformat(stage["started_at"])
    intervals = int((now - started) / interval)
    if intervals < 1:
        return None
    return f"stage:{request.stage}@{int(started.timestamp())}#{intervals}"


# After requests.expire-stages: a stage that has just timed out is not reminded of.
@periodic_task("approvals.remind", order=1)
def send_approval_reminders(context: TaskContext, now: datetime) -> dict[str, int]:
    """Remind approvers of waiting requests (POLICYD_APPROVAL_REMINDER, or a package's own)."""
    runtime = context.runtime
    bundle = runtime.active.bundle if runtime is not None and runtime.active else None
    with context.sessions() as session:
        queued = remind_approvers(
            session, now=now, interval=context.approval_reminder, bundle=bundle
        )
    return {"approval_reminders": queued}
