"""Who is told what, and when: notification jobs in the outbox, rendered when sent."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import AssignmentState
from policyd.periodic import TaskContext, periodic_task
from policyd.rules import PolicyRuntime
from policyd.services.approvers import present
from policyd.services.events import Event, emit
from policyd.services.jobs import JobService
from policyd.services.messages import Message, Messages
from policyd.store.models import Assignment, Job, Membership, User
from policyd.store.types import new_id

CHANNEL = "notify"  # the job's connector column: resolved to a notifier by the worker
REMINDER_OFFSETS = (timedelta(days=14), timedelta(days=1))


def notify(
    session: Session, kind: str, object_id: str, recipients: Iterable[str], *, now: datetime
) -> None:
    """Queue one notification per recipient, in the caller's transaction."""
    notify_many(session, [(kind, object_id, recipient) for recipient in recipients], now=now)


def notify_many(session: Session, notes: Iterable[tuple[str, str, str]], *, now: datetime) -> None:
    """Queue many notifications, each (kind, object id, recipient), once each, with one
    statement."""
    jobs = [
        notification_job(kind, object_id, user) for kind, object_id, user in dict.fromkeys(notes)
    ]
    JobService(session).enqueue_many(jobs, now=now)


def notification_job(
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
    """Queue each expiry reminder once, `offset` before an active assignment ends (a
    package's own `reminders.expiry` instead of `offsets` where it sets them), and a digest
    of them to each owner and manager of the packages. Returns how many reminders.

    A reminder is a notify job tied to its assignment and keyed by its offset, so the due
    ones are found with one query per offset however many assignments are active.
    """
    return queue_reminders(session, now=now, offsets=offsets, runtime=runtime, listeners=listeners)[
        "reminders"
    ]


def queue_reminders(
    session: Session,
    *,
    now: datetime,
    offsets: Iterable[timedelta] = REMINDER_OFFSETS,
    runtime: PolicyRuntime | None = None,
    listeners: frozenset[str] = frozenset(),
) -> dict[str, int]:
    """remind_due's work: how many reminders and owners' digests were queued."""
    bundle = runtime.active.bundle if runtime is not None and runtime.active else None
    default = tuple(offsets)
    own = {
        pid: policy.expiry
        for pid, policy in (bundle.reminders if bundle else {}).items()
        if policy.expiry is not None
    }
    reminded: list[Any] = []
    for offset in sorted({*default, *(o for schedule in own.values() for o in schedule)}):
        rows = _due(session, offset, now, _packages_with(offset, default, own))
        key = f"before:{int(offset.total_seconds())}"
        jobs = [
            notification_job(
                "access_expiring", row.id, row.subject_id, key=key, assignment_id=row.id
            )
            for row in rows
        ]
        JobService(session).enqueue_many(jobs, now=now)
        if runtime is not None:  # and access.expiring for the connectors that take events
            emit(session, runtime, listeners, [_expiring(row, offset) for row in rows], now=now)
        reminded += rows
    digests = tell_owners(session, bundle, reminded, now=now) if bundle else 0
    session.commit()
    return {"reminders": len(reminded), "digests": digests}


def _packages_with(
    offset: timedelta, default: tuple[timedelta, ...], own: dict[str, tuple[timedelta, ...]]
) -> Any:
    """The condition on `Assignment.package` for the packages reminded at `offset`."""
    if offset in default:  # every package but those whose own schedule leaves it out
        return Assignment.package.not_in([pid for pid, s in own.items() if offset not in s])
    return Assignment.package.in_([pid for pid, s in own.items() if offset in s])


def _due(session: Session, offset: timedelta, now: datetime, packages: Any) -> list[Any]:
    """Active assignments of `packages` that end within `offset` and were not reminded at it."""
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
            packages,
            ~sent,
        )
        .order_by(Assignment.expires_at)
    )
    # Access shorter than the offset: a reminder would only be noise.
    return [row for row in due if row.starts_at + offset < row.expires_at]


def tell_owners(session: Session, bundle: Any, reminded: Sequence[Any], *, now: datetime) -> int:
    """One digest per owner or manager (of the package or its catalog) listing the reminded
    assignments of their packages; how many digests were queued."""
    by_package: dict[str, list[str]] = defaultdict(list)
    for row in reminded:
        by_package[row.package].append(row.id)
    by_person: dict[str, list[str]] = defaultdict(list)
    for package_id, ids in by_package.items():
        for person in administrators(session, bundle, package_id):
            by_person[person].extend(ids)
    jobs = []
    for person, ids in sorted(by_person.items()):
        job = notification_job("access_expiring_digest", new_id(), person, key="digest")
        jobs.append({**job, "payload": {"assignments": list(dict.fromkeys(ids))}})
    JobService(session).enqueue_many(jobs, now=now)
    return len(jobs)


def tell_review_owners(
    session: Session,
    bundle: Any,
    campaign_id: str,
    items: Sequence[dict[str, Any]],
    reviewers: Sequence[dict[str, str]],
    *,
    now: datetime,
) -> int:
    """Tell each owner and manager of the packages a new campaign holds items of (and owner
    of their catalog) how many items are theirs; how many were told. A reviewer in the
    campaign hears of it once, through review_needed."""
    counts: dict[str, int] = defaultdict(int)
    for package_id, held in Counter(item["package"] for item in items).items():
        for person in administrators(session, bundle, package_id):
            counts[person] += held
    reviewing = {row["user_id"] for row in reviewers}
    jobs = [
        {**notification_job("review_opened", campaign_id, person), "payload": {"items": held}}
        for person, held in sorted(counts.items())
        if person not in reviewing
    ]
    JobService(session).enqueue_many(jobs, now=now)
    return len(jobs)


def administrators(session: Session, bundle: Any, package_id: str) -> list[str]:
    """The people who own or manage a package, or own its catalog: groups expanded, those
    who have left left out."""
    package = bundle.packages.get(package_id)
    if package is None:
        return []
    catalog = bundle.catalogs.get(package.catalog) if package.catalog else None
    refs = [*package.owners, *package.managers, *(catalog.owners if catalog else ())]
    users = [ref.removeprefix("user:") for ref in refs if ref.startswith("user:")]
    groups = [ref.removeprefix("group:") for ref in refs if ref.startswith("group:")]
    if groups:
        members = select(Membership.user_id).where(Membership.group_id.in_(groups))
        users += sorted(session.scalars(members))
    return present(session, list(dict.fromkeys(users)))


@periodic_task("notifications.remind")
def send_reminders(context: TaskContext, now: datetime) -> dict[str, int]:
    """Queue expiry reminders (POLICYD_REMINDERS, or a package's own) and owners' digests."""
    with context.sessions() as session:
        return queue_reminders(
            session,
            now=now,
            offsets=context.reminders,
            runtime=context.runtime,
            listeners=context.connectors.listeners() if context.connectors else frozenset(),
        )


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


def message(
    session: Session,
    resource: str,
    recipient: str,
    messages: Messages | None = None,
    payload: dict[str, Any] | None = None,
) -> Message | None:
    """The message of a notify job for `recipient` about `resource` (kind:object id); None
    when there is nobody to tell (no address, or deleted)."""
    user = session.get(User, recipient)
    if user is None or not user.email or user.state == "deleted":
        return None
    kind, _, object_id = resource.partition(":")
    rendered = (messages or Messages()).render(session, kind, object_id, user, payload)
    return Message(user.email, rendered)


def render(session: Session, kind: str, object_id: str) -> tuple[str, str]:
    """(subject line, text) for a notification with the shipped templates and no recipient,
    from the object's state now."""
    rendered = Messages().render(session, kind, object_id)
    return rendered.subject, rendered.text
