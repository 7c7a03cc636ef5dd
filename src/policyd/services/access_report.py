"""Who had access: holders of a package, a resource or a person's access at a time or over a
period, from the assignments' stored start and end, with the request, approvers, rule and
version that granted it then."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from policyd.domain import JobState, RequestState
from policyd.services.actor import Actor, Role
from policyd.services.errors import ForbiddenError, InvalidError
from policyd.services.listing import list_page
from policyd.store.models import AccessRequest, Approval, Assignment, Job
from policyd.store.query import among


@dataclass(frozen=True)
class Terms:
    """The request whose decision a holding stood on from `granted_at` until `until`: the
    one that created the assignment, or an approved extension of it."""

    request_id: str
    decision_id: str
    rule: str | None
    version: str
    approved_by: list[dict[str, Any]]  # approver, stage, at; empty when the rules approved
    granted_at: datetime
    until: datetime | None  # the next extension, the end of access, or None (still held)


@dataclass(frozen=True)
class Holding:
    """One assignment that held access in the window asked about, with its terms then."""

    assignment_id: str
    subject_id: str
    package: str
    state: str  # now
    held_from: datetime
    held_until: datetime | None  # when policyd started taking it away; None: still held
    expires_at: datetime | None
    terms: list[Terms] = field(default_factory=list)


@dataclass(frozen=True)
class Window:
    """A moment (`start` == `end`, inclusive) or a period [start, end)."""

    start: datetime
    end: datetime

    @property
    def moment(self) -> bool:
        return self.start == self.end

    def overlaps(self, begins: datetime, ends: datetime | None) -> bool:
        """Whether [begins, ends) meets the window."""
        before_end = begins <= self.end if self.moment else begins < self.end
        return before_end and (ends is None or ends > self.start)


def window(
    at: datetime | None = None, start: datetime | None = None, end: datetime | None = None
) -> Window:
    """The window of a report: `at`, or `start` and `end` (from, to).

    Raises:
        InvalidError: naming the field that is missing, extra or out of order.
    """
    if at is not None:
        if start is not None or end is not None:
            raise InvalidError("give either at, or from and to, not both", field="at")
        return Window(at, at)
    if start is None or end is None:
        name = "from" if start is None and end is not None else "to" if start else "at"
        raise InvalidError("give a moment (at) or a period (from and to)", field=name)
    if end <= start:
        raise InvalidError("to must be later than from", field="to")
    return Window(start, end)


def check_target(package: str | None, resource: str | None, subject: str | None) -> None:
    """A report is about exactly one package, resource or person.

    Raises:
        InvalidError: naming the second one given, or `package` when none is.
    """
    given = [
        name
        for name, value in (("package", package), ("resource", resource), ("subject", subject))
        if value
    ]
    if len(given) != 1:
        raise InvalidError(
            "give exactly one of package, resource and subject",
            field=given[1] if len(given) > 1 else "package",
        )


class AccessReportService:
    def __init__(self, session: Session):
        self.session = session

    def holders(
        self,
        actor: Actor,
        when: Window,
        *,
        package: str | None = None,
        resource: str | None = None,
        subject: str | None = None,
        after: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[Holding], int | None]:
        """One page of the holders (admins and auditors), oldest grant first, and how many
        there are in all."""
        query = self._query(actor, when, package, resource, subject)
        rows, total = list_page(self.session, query, after=after, offset=offset, limit=limit)
        return rows.carried(self._holdings(rows, when)), total

    def stream(
        self,
        actor: Actor,
        when: Window,
        *,
        package: str | None = None,
        resource: str | None = None,
        subject: str | None = None,
        batch: int = 1000,
    ) -> Iterator[Holding]:
        """Every holder, `batch` assignments at a time (the CLI's CSV and JSON)."""
        query = self._query(actor, when, package, resource, subject)
        after: tuple[datetime, str] | None = None
        while True:
            step = query
            if after is not None:
                step = step.where(
                    (Assignment.starts_at > after[0])
                    | ((Assignment.starts_at == after[0]) & (Assignment.id > after[1]))
                )
            assignments = list(self.session.scalars(step.limit(batch)))
            yield from self._holdings(assignments, when)
            if len(assignments) < batch:
                return
            after = (assignments[-1].starts_at, assignments[-1].id)

    def _query(
        self,
        actor: Actor,
        when: Window,
        package: str | None,
        resource: str | None,
        subject: str | None,
    ) -> Select:
        if actor.role not in (Role.ADMIN, Role.AUDITOR):
            raise ForbiddenError("the access report is for admins and auditors")
        check_target(package, resource, subject)
        # The index on (package or subject_id, starts_at) finds the assignments begun by the
        # window's end; those that ended before it are filtered out of that range.
        started = (
            Assignment.starts_at <= when.end if when.moment else Assignment.starts_at < when.end
        )
        query = select(Assignment).where(
            started, or_(Assignment.removed_at.is_(None), Assignment.removed_at > when.start)
        )
        if package:
            query = query.where(Assignment.package == package)
        elif subject:
            query = query.where(Assignment.subject_id == subject)
        else:
            # What each assignment granted is in its grant jobs (ix_jobs_grant_resource):
            # this holds for the versions of the rules in force then, not only today's.
            granted = select(Job.assignment_id).where(
                Job.kind == "grant", Job.resource == resource, Job.state != JobState.FAILED
            )
            query = query.where(Assignment.id.in_(granted))
        return query.order_by(Assignment.starts_at, Assignment.id)

    def _holdings(self, assignments: Sequence[Assignment], when: Window) -> list[Holding]:
        """The terms of each assignment in the window: its request's, then its extensions'."""
        if not assignments:
            return []
        requests, extensions = self._requests(assignments)
        approvals = self._approvals(list(requests))
        return [
            Holding(
                assignment_id=assignment.id,
                subject_id=assignment.subject_id,
                package=assignment.package,
                state=assignment.state,
                held_from=assignment.starts_at,
                held_until=assignment.removed_at,
                expires_at=assignment.expires_at,
                terms=_terms(assignment, requests, extensions[assignment.id], approvals, when),
            )
            for assignment in assignments
        ]

    def _requests(
        self, assignments: Sequence[Assignment]
    ) -> tuple[dict[str, AccessRequest], dict[str, list[AccessRequest]]]:
        """In one query: the requests that made the assignments, by id, and the delivered
        extensions of each assignment, by assignment id."""
        ids = [assignment.id for assignment in assignments]
        extensions: dict[str, list[AccessRequest]] = defaultdict(list)
        requests = {
            request.id: request
            for request in self.session.scalars(
                select(AccessRequest).where(
                    among(self.session, AccessRequest.id, {a.request_id for a in assignments})
                    | (
                        among(self.session, AccessRequest.extends_assignment_id, ids)
                        & (AccessRequest.state == RequestState.DELIVERED)
                    )
                )
            )
        }
        for request in requests.values():
            if request.extends_assignment_id in ids and request.state == RequestState.DELIVERED:
                extensions[request.extends_assignment_id].append(request)
        return requests, extensions

    def _approvals(self, request_ids: list[str]) -> dict[str, list[Approval]]:
        """The approving verdicts of each request, by request id, in stage order."""
        approvals: dict[str, list[Approval]] = defaultdict(list)
        for approval in self.session.scalars(
            select(Approval)
            .where(among(self.session, Approval.request_id, request_ids))
            .where(Approval.verdict == "approve")
            .order_by(Approval.stage)
        ):
            approvals[approval.request_id].append(approval)
        return approvals


def _terms(
    assignment: Assignment,
    requests: dict[str, AccessRequest],
    extensions: list[AccessRequest],
    approvals: dict[str, list[Approval]],
    when: Window,
) -> list[Terms]:
    """The terms the assignment was held under in the window: each request's runs from when
    it was granted (an extension: its last approval) until the next one's."""
    steps = [(assignment.starts_at, requests.get(assignment.request_id))]
    for request in extensions:
        approved = [approval.at for approval in approvals[request.id]]
        steps.append((max(approved, default=request.created_at), request))
    steps.sort(key=lambda step: step[0])
    terms = []
    for number, (granted_at, request) in enumerate(steps):
        until = steps[number + 1][0] if number + 1 < len(steps) else assignment.removed_at
        if request is None or not when.overlaps(granted_at, until):
            continue
        terms.append(
            Terms(
                request_id=request.id,
                decision_id=request.decision_id,
                rule=request.rule,
                version=request.version,
                approved_by=[
                    {"approver": a.approver, "stage": a.stage, "at": a.at}
                    for a in approvals[request.id]
                ],
                granted_at=granted_at,
                until=until,
            )
        )
    return terms
