"""Lifecycle events (request created and approved, access expiring) for the connectors that
take them, such as webhooks: one `send` job per resource of the package on such a connector,
written in the transaction of the change, so an event is never lost and never invented."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from policyd.rules import PolicyRuntime
from policyd.services.jobs import JobService
from policyd.store.models import AccessRequest

# (event, package, subject id, the event's own fields, assignment id)
Event = tuple[str, str, str, dict[str, Any], str | None]


def emit(
    session: Session,
    runtime: PolicyRuntime,
    listeners: frozenset[str],
    events: Iterable[Event],
    *,
    now: datetime,
) -> None:
    """Queue each event for every resource of its package whose connector is a listener."""
    if not listeners:
        return
    policy = runtime.active
    packages = policy.bundle.packages if policy is not None else {}
    jobs = [
        {
            "kind": "send",
            "connector": resource.connector,
            "resource": resource.resource,
            "role": event,
            "subject_id": subject_id,
            "assignment_id": assignment_id,
            "payload": fields,
        }
        for event, package, subject_id, fields, assignment_id in events
        for resource in (packages[package].resources if package in packages else ())
        if resource.connector in listeners
    ]
    JobService(session).enqueue_many(jobs, now=now)


def request_event(event: str, request: AccessRequest, **fields: Any) -> Event:
    """An event about `request`, with what it says about the request."""
    about = {
        "request": {
            "id": request.id,
            "package": request.package,
            "state": request.state,
            "requested_by": request.principal,
            "justification": request.justification,
        },
        **fields,
    }
    return event, request.package, request.subject_id, about, None
