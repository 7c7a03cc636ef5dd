"""Reconciliation: compare what connectors hold with what live assignments grant."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.connectors.base import ConnectorError, ListingConnector
from policyd.connectors.config import Connectors
from policyd.domain import AssignmentState, JobState
from policyd.services.assignment_delivery import LIVE_STATES
from policyd.services.assignment_removal import REVOKE_ATTEMPTS
from policyd.services.jobs import JobService
from policyd.store.models import Assignment, Job

LISTING = 1000  # resources per members_of call: one query each for the directory


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
    authorised, expected = _holders(session)
    roles = _granted_roles(session)
    report = []
    jobs = JobService(session)
    listed = _list_members(connectors, [key for key in sorted(roles) if not only or key[0] == only])
    for (name, resource), granted_roles in sorted(roles.items()):
        if only and name != only:
            continue
        drift = Drift(name, resource)
        report.append(drift)
        actual = _actual_members(connectors, listed, drift)
        if actual is None:
            continue
        holders = expected[(name, resource)]
        drift.missing = {user: a for user, (a, _) in holders.items() if user not in actual}
        drift.unauthorised = actual - authorised[(name, resource)]
        if fix:
            _mend(jobs, drift, holders, granted_roles, now)
    session.commit()
    return report


def _holders(
    session: Session,
) -> tuple[dict[tuple[str, str], set[str]], dict[tuple[str, str], dict[str, tuple[str, str]]]]:
    """Who may hold each resource and who must, per (connector, resource).

    May: the people whose live assignments grant it, and those whose revokes are still on
    their way. Must: those whose grant is done (one queued or running is on its way, not
    missing), as user id -> (assignment id, role).
    """
    authorised: dict[tuple[str, str], set[str]] = defaultdict(set)
    expected: dict[tuple[str, str], dict[str, tuple[str, str]]] = defaultdict(dict)
    rows = session.execute(
        select(
            Job.connector,
            Job.resource,
            Job.role,
            Job.subject_id,
            Job.assignment_id,
            Job.state,
            Assignment.state,
        )
        .join(Assignment, Assignment.id == Job.assignment_id)
        .where(
            Job.kind == "grant",
            Job.state != JobState.FAILED,
            Assignment.state.in_((*LIVE_STATES, AssignmentState.EXPIRING)),
        )
    )
    for connector, resource, role, subject, assignment, state, assignment_state in rows:
        authorised[(connector, resource)].add(subject)
        if state == JobState.DONE and assignment_state in LIVE_STATES:
            expected[(connector, resource)][subject] = (assignment, role)
    return authorised, expected


def _granted_roles(session: Session) -> dict[tuple[str, str], set[str]]:
    """Every role ever granted per (connector, resource): resources we granted in the past may
    hold people no live assignment covers."""
    roles: dict[tuple[str, str], set[str]] = defaultdict(set)
    for connector, resource, role in session.execute(
        select(Job.connector, Job.resource, Job.role).where(Job.kind == "grant").distinct()
    ):
        roles[(connector, resource)].add(role)
    return roles


def _actual_members(
    connectors: Connectors, listed: dict[tuple[str, str], set[str]], drift: Drift
) -> set[str] | None:
    """Who the connector says holds the drift's resource, or None with `drift.error` set."""
    name, resource = drift.connector, drift.resource
    try:
        if not connectors.abilities(name).reconcilable:
            drift.error = "this connector cannot list members; skipped"
            return None
        actual = listed.get((name, resource))
        if actual is None:
            actual = connectors.get(name).members(resource)
    except (KeyError, ConnectorError) as err:
        drift.error = str(err)
        return None
    return actual


def _mend(
    jobs: JobService,
    drift: Drift,
    holders: dict[str, tuple[str, str]],
    granted_roles: set[str],
    now: datetime,
) -> None:
    """Queue a grant for each missing holder and revokes for each unauthorised one."""
    name, resource = drift.connector, drift.resource
    for user, assignment in sorted(drift.missing.items()):
        role = holders[user][1]
        jobs.enqueue("grant", name, resource, role, user, assignment_id=assignment, now=now)
    for user in sorted(drift.unauthorised):
        # members() does not say which role someone holds: take away every role we grant.
        for role in sorted(granted_roles):
            job = jobs.enqueue("revoke", name, resource, role, user, assignment_id=None, now=now)
            job.max_attempts = REVOKE_ATTEMPTS


def _list_members(
    connectors: Connectors, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], set[str]]:
    """The holders of each (connector, resource) that a connector able to list many at once
    (ListingConnector) gave, LISTING resources a call; the rest are asked one by one."""
    by_connector: dict[str, list[str]] = defaultdict(list)
    for name, resource in keys:
        by_connector[name].append(resource)
    listed: dict[tuple[str, str], set[str]] = {}
    for name, resources in by_connector.items():
        try:
            connector = connectors.get(name)
        except (KeyError, ConnectorError):
            continue  # the loop reports it per resource
        listing = isinstance(connector, ListingConnector)
        if not listing or not connectors.abilities(name).reconcilable:
            continue
        for start in range(0, len(resources), LISTING):
            try:
                found = connector.members_of(resources[start : start + LISTING])
            except ConnectorError:
                continue  # asked one by one, each failure is reported with its resource
            listed.update(((name, resource), members) for resource, members in found.items())
    return listed
