"""Reconciliation: compare what connectors hold with what live assignments grant."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.collector import collector_paused
from policyd.connectors.base import ConnectorError, ListingConnector
from policyd.connectors.config import Connectors
from policyd.domain import AssignmentState, JobState
from policyd.services.assignment_delivery import LIVE_STATES
from policyd.services.assignment_removal import REVOKE_ATTEMPTS
from policyd.services.jobs import JobService
from policyd.store.models import Assignment, Job

LISTING = 1000  # resources per members_of call: one query each for the directory
PAGE = 1000  # resources a page of reconcile reads, lists and mends together
_LIVE = frozenset(LIVE_STATES)
_HOLDING = frozenset((*LIVE_STATES, AssignmentState.EXPIRING))  # may hold: revoke on its way

Key = tuple[str, str]  # (connector, resource)


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
    is never granted again. The whole report of `reconcile_pages`, in resource order.
    """
    return [
        drift
        for page in reconcile_pages(session, connectors, now=now, only=only, fix=fix)
        for drift in page
    ]


def reconcile_pages(
    session: Session,
    connectors: Connectors,
    *,
    now: datetime,
    only: str | None = None,
    fix: bool = False,
    size: int = PAGE,
) -> Iterator[list[Drift]]:
    """`reconcile` a page of `size` granted resources at a time, in resource order.

    Each page reads its own grants (a range of `ix_jobs_grant_resource`), asks each connector
    for the page's members, and commits (its mending jobs, with `fix`), so a page costs the
    same at any size of the tables and nothing holds a transaction open for the whole run.
    """
    last = None
    while True:
        with collector_paused():
            resources = _next_resources(session, last, size, only)
            if not resources:
                return
            report = _page(session, connectors, now, fix, (last, resources[-1]), only)
            last = resources[-1]
        yield report


def _page(
    session: Session,
    connectors: Connectors,
    now: datetime,
    fix: bool,
    span: tuple[str | None, str],
    only: str | None,
) -> list[Drift]:
    """The drift of the resources after span[0] up to span[1], mended with `fix`, committed."""
    grants = _grants(session, *span, only)
    skipped = _skipped(connectors, {name for name, _ in grants.roles})
    listed = _list_members(connectors, sorted(grants.roles), skipped)
    report, jobs = [], JobService(session)
    for (name, resource), granted_roles in sorted(grants.roles.items()):
        drift = Drift(name, resource)
        report.append(drift)
        actual = _actual_members(connectors, listed, drift, skipped)
        if actual is None:
            continue
        holders = grants.expected.get((name, resource), {})
        drift.missing = {user: a for user, (a, _) in holders.items() if user not in actual}
        drift.unauthorised = actual - grants.authorised.get((name, resource), set())
        if fix:
            _mend(jobs, drift, holders, granted_roles, now)
    session.commit()
    return report


def _next_resources(session: Session, last: str | None, size: int, only: str | None) -> list[str]:
    """The next `size` resources (after `last`) ever granted, in order."""
    query = select(Job.resource).where(Job.kind == "grant").distinct().order_by(Job.resource)
    if last is not None:
        query = query.where(Job.resource > last)
    if only is not None:
        query = query.where(Job.connector == only)
    return list(session.scalars(query.limit(size)))


@dataclass
class _Grants:
    """What a page's grant jobs say, per (connector, resource).

    roles: every role ever granted, for resources we granted in the past may hold people no
    live assignment covers. authorised: who may hold it, the people whose live assignments
    grant it and those whose revokes are still on their way. expected: who must, those whose
    grant is done (one queued or running is on its way, not missing), as user id ->
    (assignment id, role).
    """

    roles: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    authorised: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))
    expected: dict[Key, dict[str, tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(dict)
    )


def _grants(session: Session, after: str | None, through: str, only: str | None) -> _Grants:
    """The grants of the resources after `after` up to `through`, read in one query."""
    # One primary-key probe per grant: a join would let the planner hash every assignment.
    held = select(Assignment.state).where(Assignment.id == Job.assignment_id).scalar_subquery()
    query = select(
        Job.connector, Job.resource, Job.role, Job.subject_id, Job.assignment_id, Job.state, held
    ).where(Job.kind == "grant", Job.resource <= through)
    if after is not None:
        query = query.where(Job.resource > after)
    if only is not None:
        query = query.where(Job.connector == only)
    grants = _Grants()
    # Plain rows of the connection, fetched at once: the ORM's row handling cost more.
    for connector, resource, role, subject, assignment, state, held in (
        session.connection().execute(query).all()
    ):
        key = (connector, resource)
        grants.roles[key].add(role)
        if state == JobState.FAILED or held not in _HOLDING:
            continue
        grants.authorised[key].add(subject)
        if state == JobState.DONE and held in _LIVE:
            grants.expected[key][subject] = (assignment, role)
    return grants


def _skipped(connectors: Connectors, names: set[str]) -> dict[str, str | None]:
    """Why each connector of `names` cannot be reconciled (None: it can), asked once a page."""
    why: dict[str, str | None] = {}
    for name in names:
        try:
            reconcilable = connectors.abilities(name).reconcilable
        except (KeyError, ConnectorError) as err:
            why[name] = str(err)
            continue
        why[name] = None if reconcilable else "this connector cannot list members; skipped"
    return why


def _actual_members(
    connectors: Connectors,
    listed: dict[Key, set[str]],
    drift: Drift,
    skipped: dict[str, str | None],
) -> set[str] | None:
    """Who the connector says holds the drift's resource, or None with `drift.error` set."""
    drift.error = skipped[drift.connector]
    if drift.error is not None:
        return None
    actual = listed.get((drift.connector, drift.resource))
    if actual is None:
        try:
            actual = connectors.get(drift.connector).members(drift.resource)
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
    connectors: Connectors, keys: list[Key], skipped: dict[str, str | None]
) -> dict[Key, set[str]]:
    """The holders of each (connector, resource) that a connector able to list many at once
    (ListingConnector) gave, LISTING resources a call; the rest are asked one by one."""
    by_connector: dict[str, list[str]] = defaultdict(list)
    for name, resource in keys:
        by_connector[name].append(resource)
    listed: dict[Key, set[str]] = {}
    for name, resources in by_connector.items():
        if skipped[name] is not None:
            continue  # the loop reports it per resource
        connector = connectors.get(name)
        if not isinstance(connector, ListingConnector):
            continue
        for start in range(0, len(resources), LISTING):
            try:
                found = connector.members_of(resources[start : start + LISTING])
            except ConnectorError:
                continue  # asked one by one, each failure is reported with its resource
            listed.update(((name, resource), members) for resource, members in found.items())
    return listed
