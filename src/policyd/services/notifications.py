"""Who is told what, and when: notification jobs in the outbox, rendered when sent."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import AssignmentState
from policyd.periodic import TaskContext, periodic_task
from policyd.rules import PolicyRuntime
from policyd.services.events import Event, emit
from policyd.services.jobs import JobService
from policyd.store.models import AccessRequest, Assignment, Job, ReviewCampaign, User

CHANNEL = "notify"  # the job's connector column: resolved to a notifier by the worker
REMINDER_OFFSETS = (timedelta(days=14), timedelta(days=1))

SUBJECTS = {
    "approval_needed": "Approval needed: {package} for {subject}",
    "request_decided": "Your request for {package} was {state}",
    "access_granted": "You now have {package}",
    "access_expiring": "Your access to {package} ends {expires}",
    "access_removed": "Your access to {package} has ended",
    "review_needed": "Access review: {package}, until {expires}",
    "review_reminder": "Reminder: access review of {package} ends {expires}",
}
TEXTS = {
    "approval_needed": (
        "{subject} asks for {package}.\nReason: {reason}\nJustification: {justification}\n"
        "Approve or deny request {id} in policyd."
    ),
    "request_decided": "Request {id} for {package} is {state}: {reason}",
    "access_granted": "Request {id} for {package} is delivered. It ends {expires}.",
    "access_expiring": "Your access to {package} ends {expires}. Extend it in policyd if "
    "you still need it.",
    "access_removed": "Your access to {package} (assignment {id}) has been removed.",
    "review_needed": "Please review who holds {package} in policyd by {expires} (campaign "
    "{id}): keep or remove each, with a justification.",
    "review_reminder": "You still have access to review for {package} (campaign {id}); "
    "the review ends {expires}.",
}


def notify(
    session: Session, kind: str, object_id: str, recipients: Iterable[str], *, now: datetime
) -> None:
    """Queue one notification per recipient, in the caller's transaction."""
    notify_many(session, [(kind, object_id, recipient) for recipient in recipients], now=now)


def notify_many(session: Session, notes: Iterable[tuple[str, str, str]], *, now: datetime) -> None:
    """Queue many notifications, each (kind, object id, recipient), once each, with one
    statement."""
    jobs = [_notification(kind, object_id, user) for kind, object_id, user in dict.fromkeys(notes)]
    JobService(session).enqueue_many(jobs, now=now)


def _notification(
    kind: str, object_id: str, recipient: str, *, key: str = "", assignment_id: str | None = None
) -> dict[str, Any]:
    """A notify job: `kind` about `object_id` for `recipient`; `key` tells repeats apart."""
    return {
        "kind": "notify",
        "connector": CHANNEL,
        "resource": f"{kind}:{object_id}",
        "role": key,
        "subject_id": recipient,
        "assignment_id": assignment_id,
    }


def remind_due(
    session: Session,
    *,
    now: datetime,
    offsets: Iterable[timedelta] = REMINDER_OFFSETS,
    runtime: PolicyRuntime | None = None,
    listeners: frozenset[str] = frozenset(),
) -> int:
    """Queue each expiry reminder once, `offset` before an active assignment ends.

    A reminder is a notify job tied to its assignment and keyed by its offset, so the due
    ones are found with one query per offset however many assignments are active.
    """
    queued = 0
    for offset in offsets:
        key = f"before:{int(offset.total_seconds())}"
        sent = (
            select(Job.id)
            .where(Job.assignment_id == Assignment.id, Job.kind == "notify", Job.role == key)
            .exists()
        )
        due = session.execute(
            select(
                Assignment.id,
                Assignment.subject_id,
                Assignment.package,
                Assignment.starts_at,
                Assignment.expires_at,
            )
            .where(
                Assignment.state == AssignmentState.ACTIVE,
                Assignment.expires_at > now,
                Assignment.expires_at <= now + offset,
                ~sent,
            )
            .order_by(Assignment.expires_at)
        )
        # Access shorter than the offset: a reminder would only be noise.
        rows = [row for row in due if row.starts_at + offset < row.expires_at]
        jobs = [
            _notification("access_expiring", row.id, row.subject_id, key=key, assignment_id=row.id)
            for row in rows
        ]
        JobService(session).enqueue_many(jobs, now=now)
        if runtime is not None:  # and access.expiring for the connectors that take events
            emit(session, runtime, listeners, [_expiring(row, offset) for row in rows], now=now)
        queued += len(jobs)
    session.commit()
    return queued


@periodic_task("notifications.remind")
def send_reminders(context: TaskContext, now: datetime) -> dict[str, int]:
    """Queue expiry reminders (POLICYD_REMINDERS) for access about to end."""
    with context.sessions() as session:
        queued = remind_due(
            session,
            now=now,
            offsets=context.reminders,
            runtime=context.runtime,
            listeners=context.connectors.listeners() if context.connectors else frozenset(),
        )
    return {"reminders": queued}


def _expiring(row: Any, offset: timedelta) -> Event:
    """The access.expiring event of a reminder."""
    fields = {
        "assignment": {
            "id": row.id,
            "package": row.package,
            "expires_at": row.expires_at.isoformat(),
        },
        "seconds_left": int(offset.total_seconds()),
    }
    return "access.expiring", row.package, row.subject_id, fields, row.id


def message(session: Session, resource: str, recipient: str) -> tuple[str, str, str] | None:
    """(address, subject line, text) of a notify job for `recipient` about `resource`
    (kind:object id); None when there is nobody to tell (no address, or deleted)."""
    user = session.get(User, recipient)
    if user is None or not user.email or user.state == "deleted":
        return None
    kind, _, object_id = resource.partition(":")
    subject, text = render(session, kind, object_id)
    return user.email, subject, text


def render(session: Session, kind: str, object_id: str) -> tuple[str, str]:
    """(subject line, text) for a notification, from the object's state when it is sent."""
    values: dict[str, str] = {"id": object_id, "reason": "", "justification": "-"}
    request = session.get(AccessRequest, object_id)
    assignment = session.get(Assignment, object_id)
    if request is not None:
        values.update(
            package=request.package,
            subject=request.subject_id,
            state=request.state.replace("_", " "),
            reason=request.reason,
            justification=request.justification or "-",
            expires=_when(request.expires_at),
        )
    elif assignment is not None:
        values.update(
            package=assignment.package,
            subject=assignment.subject_id,
            state=assignment.state,
            expires=_when(assignment.expires_at),
        )
    elif (campaign := session.get(ReviewCampaign, object_id)) is not None:
        values.update(
            package=campaign.package,
            subject="-",
            state=campaign.state,
            expires=_when(campaign.ends_at),
        )
    else:
        values.update(package="?", subject="?", state="gone", expires="-")
    return SUBJECTS[kind].format(**values), TEXTS[kind].format(**values) + "\n"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"
