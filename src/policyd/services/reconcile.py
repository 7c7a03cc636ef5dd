"""Reconciliation: compare what connectors hold with what live assignments grant."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.connectors.base import ConnectorError
from policyd.connectors.config import Connectors
from policyd.services.jobs import JobService
from policyd.store.models import Assignment, Job

LIVE = ("delivering", "active")


@dataclass
class Drift:
    connector: str
    resource: str
    missing: dict[str, str] = field(default_factory=dict)  # user id -> assignment id
    unauthorised: set[str] = field(default_factory=set)
    error: str | None = None


def reconcile(
    session: Session,
    connectors: Connectors,
    *,
    now: datetime,
    only: str | None = None,
    fix: bool = False,
) -> list[Drift]:
    """Report drift per (connector, resource); with `fix`, queue grants and revokes to mend it.

    Expected holders come only from live assignments, so access that expired or was removed
    is never granted again.
    """
    expected: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    rows = session.execute(
        select(Job.connector, Job.resource, Job.subject_id, Job.assignment_id)
        .join(Assignment, Assignment.id == Job.assignment_id)
        .where(Job.kind == "grant", Assignment.state.in_(LIVE))
    )
    for connector, resource, subject, assignment in rows:
        expected[(connector, resource)][subject] = assignment
    # Resources we granted in the past may hold people no live assignment covers.
    for connector, resource in session.execute(
        select(Job.connector, Job.resource).where(Job.kind == "grant").distinct()
    ):
        expected.setdefault((connector, resource), {})
    report = []
    jobs = JobService(session)
    for (name, resource), holders in sorted(expected.items()):
        if only and name != only:
            continue
        drift = Drift(name, resource)
        report.append(drift)
        try:
            connector = connectors.get(name)
            if not getattr(connector, "reconcilable", True):
                drift.error = "this connector cannot list members; skipped"
                continue
            actual = connector.members(resource)
        except (KeyError, ConnectorError) as err:
            drift.error = str(err)
            continue
        drift.missing = {user: a for user, a in holders.items() if user not in actual}
        drift.unauthorised = actual - holders.keys()
        if not fix:
            continue
        for user, assignment in sorted(drift.missing.items()):
            jobs.enqueue("grant", name, resource, "member", user, assignment_id=assignment, now=now)
        for user in sorted(drift.unauthorised):
            jobs.enqueue("revoke", name, resource, "member", user, assignment_id=None, now=now)
    session.commit()
    return report
