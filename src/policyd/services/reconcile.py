"""Reconciliation: compare what connectors hold with what live assignments grant."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import CTE, ColumnElement, Select, func, select, union_all
from sqlalchemy.orm import Session

from policyd.collector import collector_paused
from policyd.connectors.base import ConnectorError, ListingConnector
from policyd.connectors.config import Connectors
from policyd.domain import AssignmentState, JobState
from policyd.services.assignment_delivery import LIVE_STATES
from policyd.services.assignment_removal import REVOKE_ATTEMPTS
from policyd.services.jobs import JobService
from policyd.store.models import Assignment, Job
from policyd.store.query import table_of

LISTING = 1000  # resources per members_of call: one query each for the directory
PAGE = 1000  # resources a page of reconcile reads, lists and mends together, at most
# Grants a page reads, at most (unless its first resource alone has more): what a page costs
# grows with its grants, so a page of large groups holds fewer of them. At a million
# assignments (bench/million.py) 5,000 made pages of 39 ms at the median, over 50 ms once a
# page met any other load; 2,500 keep a page well within that bound.
PAGE_GRANTS = 2500
_HOLDING = (*LIVE_STATES, AssignmentState.EXPIRING)  # may hold: revoke on its way

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
    grants: int = PAGE_GRANTS,
) -> Iterator[list[Drift]]:
    """`reconcile` a page of granted resources at a time, in resource order: at most `size`
    resources and, unless its first resource alone has more, `grants` grants.

    Each page reads its own grants (a range of `ix_jobs_grant_resource`), asks each connector
    for the page's members, and commits (its mending jobs, with `fix`), so a page costs the
    same at any size of the tables and nothing holds a transaction open for the whole run.
    """
    last, rows = None, size
    while True:
        with collector_paused():
            through, roles, used = _next_page(session, last, (rows, grants), only)
            if through is None:
                return
            report = _page(session, connectors, now, fix, (last, through), (roles, only))
            last = through
        # A page its grants filled after `used` rows of (resource, role) says how many the next
        # is likely to need: it reads half as many again, not `size`, which on large groups
        # read four times what a page kept (a third of the pass). Otherwise twice as many.
        rows = min(size, used + used // 2 + 8) if used else min(size, rows * 2)
        yield report


def _page(
    session: Session,
    connectors: Connectors,
    now: datetime,
    fix: bool,
    span: tuple[str | None, str],
    granted: tuple[dict[Key, set[str]], str | None],
) -> list[Drift]:
    """The drift of the resources after span[0] up to span[1], whose granted roles are
    granted[0] (through the connector granted[1], or any), mended with `fix`, committed."""
    roles, only = granted
    skipped = _skipped(connectors, {name for name, _ in roles})
    listed = _list_members(connectors, sorted(roles), skipped)
    report, actual = [], {}
    for name, resource in sorted(roles):
        drift = Drift(name, resource)
        report.append(drift)
        members = _actual_members(connectors, listed, drift, skipped)
        if members is not None:
            actual[(name, resource)] = members
    holders = _differences(session, span, only, actual)
    jobs = JobService(session)
    for drift in report:
        key = (drift.connector, drift.resource)
        if key not in actual:
            continue
        missing = holders.missing.get(key, {})
        drift.missing = {user: owed[0] for user, owed in missing.items()}
        drift.unauthorised = holders.unauthorised.get(key, set())
        if fix:
            _mend(jobs, drift, missing, roles[key], now)
    session.commit()
    return report


def _next_page(
    session: Session, last: str | None, limits: tuple[int, int], only: str | None
) -> tuple[str | None, dict[Key, set[str]], int]:
    """The next page's last resource (None: no more), every role ever granted on each
    (connector, resource) of it, from one range of `ix_jobs_grant_resource`, and how many
    (resource, connector, role) rows it took if its grants filled it (else 0).

    A page holds the next resources after `last` ever granted, in order: at most `limits[0]`
    rows' worth of them, holding at most `limits[1]` grants together (the first whatever it
    holds).
    """
    size, most = limits
    query = (
        select(Job.resource, Job.connector, Job.role, func.count())
        .where(Job.kind == "grant")
        .group_by(Job.resource, Job.connector, Job.role)
        .order_by(Job.resource)
    )
    if last is not None:
        query = query.where(Job.resource > last)
    if only is not None:
        query = query.where(Job.connector == only)
    rows = session.connection().execute(query.limit(size)).all()
    if not rows:
        return None, {}, 0
    if len(rows) == size:  # the last resource may go on beyond the limit
        cut = [row for row in rows if row[0] != rows[-1][0]]
        if not cut:  # one resource has `size` roles or more: all of its roles, then
            return rows[0][0], _granted_roles(session, last, rows[0][0], only), 0
        rows = cut
    through, total, filled = None, 0, 0
    roles: dict[Key, set[str]] = defaultdict(set)
    for number, (resource, connector, role, count) in enumerate(rows):
        total += count
        if resource != through:
            if through is not None and total > most:
                filled = number
                break
            through = resource
        roles[(connector, resource)].add(role)
    return through, roles, filled


def _in_span(query: Select, after: str | None, through: str, only: str | None) -> Select:
    """`query` kept to the grant jobs of the resources after `after` up to `through`."""
    query = query.where(Job.kind == "grant", Job.resource <= through)
    if after is not None:
        query = query.where(Job.resource > after)
    if only is not None:
        query = query.where(Job.connector == only)
    return query


def _granted_roles(
    session: Session, after: str | None, through: str, only: str | None
) -> dict[Key, set[str]]:
    """Every role ever granted on each (connector, resource) of the span: resources we
    granted in the past may hold people no live assignment covers, so revokes take all."""
    query = _in_span(select(Job.connector, Job.resource, Job.role).distinct(), after, through, only)
    roles: dict[Key, set[str]] = defaultdict(set)
    # Plain rows of the connection, fetched at once: row by row cost more than the query.
    for connector, resource, role in session.connection().execute(query).all():
        roles[(connector, resource)].add(role)
    return roles


@dataclass
class _Differences:
    """Per (connector, resource): missing, who must hold it and does not (user id ->
    (assignment id, role)); unauthorised, who holds it and may not."""

    missing: dict[Key, dict[str, tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    unauthorised: dict[Key, set[str]] = field(default_factory=lambda: defaultdict(set))


def _differences(
    session: Session, span: tuple[str | None, str], only: str | None, actual: dict[Key, set[str]]
) -> _Differences:
    """Where the `actual` members of the span's resources differ from the grants, found in
    one query that returns only the members no grant covers and the grants with no member.

    Who may hold a resource (authorised): the people whose grant of it has not failed and
    whose assignment is live or has its revoke on the way. Who must (expected): of those,
    the ones whose grant is done (one queued or running is on its way, not missing) and
    whose assignment is live.
    """
    found = _Differences()
    if not actual:
        return found
    held = _authorised(*span, only, sorted({name for name, _ in actual}))
    members = table_of(session, "members", ("connector", "resource", "user_id"), actual.items())
    same = (held.c.connector == members.c.connector) & (held.c.resource == members.c.resource)
    same &= held.c.subject_id == members.c.user_id
    for row in session.connection().execute(_apart(session, held, members, same)).all():
        connector, resource, user, assignment, role, grant_state, state, *holder = row
        if holder[2] is not None:  # a member whom no grant lets hold it
            found.unauthorised[(holder[0], holder[1])].add(holder[2])
            continue
        if (connector, resource) not in actual or grant_state != JobState.DONE:
            continue  # not compared, or on its way
        if state in LIVE_STATES:
            owing = found.missing[(connector, resource)]
            # Of a person's several grants owed, the latest assignment's (ids are
            # time-ordered) is named, the same every run.
            if user not in owing or (assignment, role) > owing[user]:
                owing[user] = (assignment, role)
    return found


def _apart(session: Session, held: CTE, members: CTE, same: ColumnElement[bool]) -> Select:
    """The grants with no member and the members with no grant: a full join."""
    columns = [*held.c, *members.c]
    if session.get_bind().dialect.name == "postgresql":
        # A full join runs by hash or merge, whatever PostgreSQL guesses of the number of
        # JSON rows; as anti-joins, a low guess made them nested loops of members x grants.
        apart = held.c.subject_id.is_(None) | members.c.user_id.is_(None)
        return select(*columns).select_from(held.outerjoin(members, same, full=True)).where(apart)
    # SQLite before 3.39 has no FULL JOIN.
    return union_all(
        select(*columns)
        .select_from(held.outerjoin(members, same))
        .where(members.c.user_id.is_(None)),
        select(*columns)
        .select_from(members.outerjoin(held, same))
        .where(held.c.subject_id.is_(None)),
    )


def _authorised(after: str | None, through: str, only: str | None, names: list[str]) -> CTE:
    """The span's grants through the connectors `names` that have not failed and whose
    assignment is live or has its revoke on the way, with the grant's state and the
    assignment's: on PostgreSQL from ix_jobs_grant_resource alone, which carries them."""
    # One primary-key probe per grant, as a subquery: a join would let a planner start from
    # the assignments (every live one) instead of the page's range of the grant index.
    state = select(Assignment.state).where(Assignment.id == Job.assignment_id).scalar_subquery()
    grants = select(
        Job.connector,
        Job.resource,
        Job.subject_id,
        Job.assignment_id,
        Job.role,
        Job.state.label("grant_state"),
        state.label("held"),
    ).where(Job.state != JobState.FAILED, Job.connector.in_(names))
    # Materialized: the state is filtered on below, and the probe must run once a grant.
    held = _in_span(grants, after, through, only).cte("all_held")
    held = held.prefix_with("MATERIALIZED", dialect="postgresql")
    return select(held).where(held.c.held.in_(list(_HOLDING))).cte("held")


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
