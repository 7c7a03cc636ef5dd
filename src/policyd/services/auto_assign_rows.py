"""What an auto-assignment writes: its decision-log entry, request, assignment, grant jobs
and audit records, as rows for bulk inserts (a batch of users in a few statements)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from policyd.domain import (
    AssignmentState,
    Decision,
    Outcome,
    RequestState,
    ResolvedLifetime,
    Subject,
    transition,
)
from policyd.rules.auto_assign import AUTO_RULE
from policyd.rules.model import AccessPackage
from policyd.services.actor import SYSTEM
from policyd.services.auto_assign_queue import AUTO
from policyd.services.decisions import subject_view
from policyd.store.types import new_id

# Approved by the rule at once, and being delivered: the moves a request makes (checked once).
_DELIVERING = transition(
    transition(RequestState.SUBMITTED, RequestState.APPROVED), RequestState.DELIVERING
).value


def request_row(entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The system's request for the decision `entry`, approved and being delivered."""
    return {
        "id": new_id(),
        "package": entry["package"],
        "subject_id": entry["subject_id"],
        "principal": SYSTEM.principal,
        "state": _DELIVERING,
        "stages": [],
        "decision_id": entry["id"],
        "version": entry["version"],
        "rule": AUTO_RULE,
        "reason": f"auto-assigned: {entry['reason']}",
        "created_at": now,
        "updated_at": now,
    }


def assignment_row(request: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The assignment the request grants: no end while its holder matches."""
    return {
        "id": new_id(),
        "subject_id": request["subject_id"],
        "package": request["package"],
        "state": AssignmentState.DELIVERING.value,
        "request_id": request["id"],
        "decision_id": request["decision_id"],
        "version": request["version"],
        "rule": AUTO_RULE,
        "starts_at": now,
        "origin": AUTO,
    }


def grant_jobs(package: AccessPackage | None, assignment: dict[str, Any]) -> list[dict]:
    """One grant job per resource of the package (JobService.enqueue_many's form)."""
    return [
        {
            "kind": "grant",
            "connector": resource.connector,
            "resource": resource.resource,
            "role": resource.role,
            "subject_id": assignment["subject_id"],
            "assignment_id": assignment["id"],
        }
        for resource in (package.resources if package is not None else ())
    ]


def created_records(request: dict[str, Any], assignment: dict[str, Any]) -> list[dict]:
    """The audit records an auto-assignment writes, as a request and AssignmentService.create
    write theirs."""
    version = request["version"]
    return [
        {
            "action": "request.auto_assigned",
            "object": ("request", request["id"]),
            "after": {
                "state": request["state"],
                "stage": None,
                "rule": AUTO_RULE,
                "version": version,
                "reason": request["reason"],
            },
            "version": version,
        },
        {
            "action": "assignment.created",
            "object": ("assignment", assignment["id"]),
            "after": {
                "state": assignment["state"],
                "expires_at": None,
                "version": version,
                "rule": AUTO_RULE,
            },
            "version": version,
        },
    ]


def decision_entry(subject: Subject, package_id: str, version: str, now: datetime) -> dict:
    """The decision-log entry of an auto-assignment (the system decided, on directory data)."""
    reason = f"matches the autoAssign rule of package {package_id!r}"
    lifetime = ResolvedLifetime(None, "auto-assigned: lasts while the user matches")
    decision = Decision(
        Outcome.AUTO_APPROVE, package_id, AUTO_RULE, (AUTO_RULE,), reason, version, now, lifetime
    )
    return {
        "id": new_id(),
        "at": now,
        "package": package_id,
        "subject_id": subject.id,
        "outcome": decision.outcome.value,
        "rule": AUTO_RULE,
        "matched": [AUTO_RULE],
        "reason": reason,
        "version": version,
        "input": {
            "subject": subject_view(subject),
            "request": {"duration": None, "justification": None},
            "now": now.isoformat(),
        },
        "result": decision.to_dict(),
        "principal": SYSTEM.principal,
        "kept": True,  # its request and assignment refer to it, inserted in its transaction
    }
