"""A dry run of auto-assignment: what a version's rules would add and remove, per package."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import isodate
from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.rules import PolicyRuntime
from policyd.rules.auto_assign import AutoAssigner
from policyd.rules.model import Bundle
from policyd.services.assignments import LIVE_STATES
from policyd.services.auto_assign_queue import AUTO
from policyd.services.auto_assignment import AutoAssignmentService
from policyd.store.models import Assignment, User
from policyd.store.query import among

PAGE = 1000  # users read per statement


@dataclass
class AutoAssignPreview:
    """Counts per package: would add, would remove, and what stays as it is."""

    version: str
    users: int = 0
    add: Counter = field(default_factory=Counter)
    remove: Counter = field(default_factory=Counter)
    keep: Counter = field(default_factory=Counter)  # auto-assigned and still matching
    held: Counter = field(default_factory=Counter)  # matching, but held by request or directly
    grace: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        names = sorted(set(self.grace) | set(self.add) | set(self.remove) | set(self.keep))
        return {
            "version": self.version,
            "users": self.users,
            "would_add": sum(self.add.values()),
            "would_remove": sum(self.remove.values()),
            "packages": [
                {
                    "package": name,
                    "would_add": self.add[name],
                    "would_remove": self.remove[name],
                    "unchanged": self.keep[name],
                    "held_otherwise": self.held[name],
                    "grace": self.grace.get(name),
                }
                for name in names
            ],
        }


def preview(
    session: Session,
    runtime: PolicyRuntime,
    bundle: Bundle,
    *,
    now: datetime,
    progress: Callable[[int], Any] | None = None,
) -> AutoAssignPreview:
    """What evaluating every active user under `bundle`'s auto-assignment rules would do
    now (removals after their grace period); writes nothing."""
    service = AutoAssignmentService(session, runtime)
    with AutoAssigner(bundle) as assigner:
        report = AutoAssignPreview(bundle.version.id)
        report.grace = {
            package_id: None if policy.grace is None else _iso(policy.grace)
            for package_id, policy in assigner.policies.items()
        }
        after = ""
        while True:
            ids = list(
                session.scalars(
                    select(User.id)
                    .where(User.state == "active", User.id > after)
                    .order_by(User.id)
                    .limit(PAGE)
                )
            )
            if not ids:
                return report
            _count(session, service, assigner, ids, report, now)
            if progress is not None:
                progress(len(ids))
            after = ids[-1]


def _count(
    session: Session,
    service: AutoAssignmentService,
    assigner: AutoAssigner,
    ids: list[str],
    report: AutoAssignPreview,
    now: datetime,
) -> None:
    auto: set[tuple[str, str]] = set()
    other: set[tuple[str, str]] = set()
    for subject_id, package, origin in session.execute(
        select(Assignment.subject_id, Assignment.package, Assignment.origin).where(
            among(session, Assignment.subject_id, ids), Assignment.state.in_(LIVE_STATES)
        )
    ):
        (auto if origin == AUTO else other).add((subject_id, package))
    for subject_id, subject in service.subjects(ids).items():
        report.users += 1
        matched = assigner.matches(subject, now)
        for package in matched:
            key = (subject_id, package)
            if key in auto:
                report.keep[package] += 1
            elif key in other:
                report.held[package] += 1
            else:
                report.add[package] += 1
        for held_by, package in auto:
            if held_by == subject_id and package not in matched:
                report.remove[package] += 1


def _iso(span: Any) -> str:
    return isodate.duration_isoformat(span)
