"""Job kinds to the functions that run them: one table, no method named by a stored string."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from policyd.connectors.base import (
    Abilities,
    BulkConnector,
    ConnectorError,
    Target,
    UserDeleter,
    UserDisabler,
)
from policyd.notify import Notification
from policyd.services.jobs import ClaimedJob, JobKind
from policyd.services.notifications import message

if TYPE_CHECKING:
    from policyd.worker.runner import Worker

# A job's runner: (the worker, the job, the targets of the jobs in hand) -> None, or raises.
Run = Callable[["Worker", ClaimedJob, dict[str, Target]], None]
# A bulk runner: (the connector, targets) -> one error or None per target.
RunMany = Callable[[BulkConnector, Sequence[Target]], Sequence[ConnectorError | None]]


def _grant(worker: Worker, job: ClaimedJob, targets: dict[str, Target]) -> None:
    worker.connector(job.connector).grant(targets[job.id])


def _revoke(worker: Worker, job: ClaimedJob, targets: dict[str, Target]) -> None:
    worker.connector(job.connector).revoke(targets[job.id])


def _send(worker: Worker, job: ClaimedJob, targets: dict[str, Target]) -> None:
    connector: Any = worker.connector(job.connector)
    connector.send(job.role, event_payload(job, targets[job.id]), job.id)


def _disable_user(worker: Worker, job: ClaimedJob, targets: dict[str, Target]) -> None:
    """Disable a guest; a connector without the ability (checked at load) skips the job."""
    connector = worker.connector(job.connector)
    if worker.connectors.abilities(job.connector).disables_users:
        cast(UserDisabler, connector).disable_user(job.subject_id)


def _delete_user(worker: Worker, job: ClaimedJob, targets: dict[str, Target]) -> None:
    """Delete a guest; a connector without the ability (checked at load) skips the job."""
    connector = worker.connector(job.connector)
    if worker.connectors.abilities(job.connector).deletes_users:
        cast(UserDeleter, connector).delete_user(job.subject_id)


def _notify(worker: Worker, job: ClaimedJob, targets: dict[str, Target]) -> None:
    """Render and send one notification; without a notifier or an address, skip it."""
    notifier = worker.notifiers.default()
    if notifier is None:
        return
    with worker.sessions() as session:
        found = message(session, job.resource, job.subject_id, worker.messages, job.payload)
    if found is None:
        return  # nowhere to send it, or nobody to tell (a deleted user's tombstone)
    rendered = found.rendered
    kind = job.resource.partition(":")[0]
    notifier.send(
        Notification(
            [found.address], rendered.subject, rendered.text, kind, id=job.id, html=rendered.html
        )
    )


RUN: dict[JobKind, Run] = {
    JobKind.GRANT: _grant,
    JobKind.REVOKE: _revoke,
    JobKind.NOTIFY: _notify,
    JobKind.SEND: _send,
    JobKind.DISABLE_USER: _disable_user,
    JobKind.DELETE_USER: _delete_user,
}
RUN_MANY: dict[JobKind, RunMany] = {
    JobKind.GRANT: lambda connector, targets: connector.grant_many(targets),
    JobKind.REVOKE: lambda connector, targets: connector.revoke_many(targets),
}
DELIVERY = frozenset(RUN_MANY)  # the kinds that change what an assignment delivered
TARGETED = frozenset({JobKind.GRANT, JobKind.REVOKE, JobKind.SEND})  # need the person's details


def kind_of(job: ClaimedJob) -> JobKind:
    """The job's kind.

    Raises:
        ConnectorError: not a kind this worker knows (not retryable: no retry will know it).
    """
    try:
        return JobKind(job.kind)
    except ValueError:
        known = ", ".join(kind.value for kind in JobKind)
        message = f"unknown job kind {job.kind!r} (this worker runs {known})"
        raise ConnectorError(message, retryable=False) from None


def runs_in_bulk(abilities: Abilities, kind: str) -> bool:
    """Whether jobs of `kind` for a connector with `abilities` go in one call (grant_many,
    revoke_many)."""
    return kind in RUN_MANY and abilities.bulk


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
