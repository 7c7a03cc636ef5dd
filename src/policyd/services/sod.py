"""Separation of duties: conflicts found when access is filed, approved and delivered, and
the report of people who hold incompatible access now."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, literal, null, select, text, tuple_, union_all, update
from sqlalchemy.orm import Session, aliased

from policyd.domain import AssignmentState, RequestOptions, RequestState, Subject
from policyd.rules import PolicyRuntime
from policyd.rules.model import SOD_GROUP, SOD_PACKAGE, Bundle
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.errors import ForbiddenError, NotFoundError
from policyd.services.versions import VersionService
from policyd.store.models import AccessRequest, Assignment, Membership, User
from policyd.store.query import Rows, count_page

# Assignments that hold access, or may: being delivered, active, failed (retryable, perhaps
# partly granted) or expiring (revocation still under way).
HELD_STATES = (
    AssignmentState.DELIVERING,
    AssignmentState.ACTIVE,
    AssignmentState.FAILED,
    AssignmentState.EXPIRING,
)
# The requests a check counts beside assignments. Filing counts every open request, so
# nobody asks for both sides; an approval or a delivery counts requests approved already,
# so that of two requests on file for incompatible packages the first approved wins.
FILING = (
    RequestState.SUBMITTED,
    RequestState.PENDING_APPROVAL,
    RequestState.APPROVED,
    RequestState.DELIVERING,
)
APPROVED = (RequestState.APPROVED, RequestState.DELIVERING)

# Keys of the PostgreSQL advisory locks taken per subject: (this namespace, a hash of the id).
_LOCK_NAMESPACE = 0x736F64  # "sod"


@dataclass(frozen=True)
class Conflict:
    """Why a subject may not have a package: the deny rule that matched and what it saw."""

    rule: str  # incompatible:<package> or incompatible-group:<group>
    version: str  # the policy version whose rule matched
    kind: str  # "package" or "group"
    other: str  # the incompatible package or group id
    via: str | None  # "assignment" or "request" for a package; None for a group
    via_id: str | None
    reason: str


@dataclass(frozen=True)
class Violation:
    """Incompatible access held now: a live assignment and a live assignment of an
    incompatible package, or membership of an incompatible group."""

    subject_id: str
    package: str
    assignment_id: str
    kind: str  # "package" or "group"
    conflicts_with: str  # the other package or the group
    other_assignment_id: str | None
    rule: str
    version: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SodService:
    """Separation-of-duties checks and report.

    The checks ask the engine: the package's `incompatible:` and `incompatible-group:` deny
    rules are evaluated on the subject with the packages of their live assignments and of
    the requests the check counts. The report is one query over every holder.
    """

    def __init__(self, session: Session, runtime: PolicyRuntime | None = None):
        self.session = session
        self.runtime = runtime

    def lock(self, subject_id: str) -> None:
        """Hold the subject's separation-of-duties lock until the transaction ends, so two
        transactions never check and grant incompatible access to one person side by side.

        PostgreSQL: a transaction-scoped advisory lock on a hash of the id. SQLite: a write
        at once, which takes the database's write lock (held until commit or rollback).
        """
        if self.session.get_bind().dialect.name == "postgresql":
            digest = hashlib.sha256(subject_id.encode()).digest()
            key = int.from_bytes(digest[:4], "big", signed=True)
            self.session.execute(
                text("SELECT pg_advisory_xact_lock(:space, :key)"),
                {"space": _LOCK_NAMESPACE, "key": key},
            )
            return
        # A Core statement, so the subject cache does not take it for a directory change.
        users = User.__table__
        self.session.connection().execute(
            update(users).where(users.c.id == subject_id).values(type=users.c.type)
        )

    def lock_many(self, subject_ids: Iterable[str]) -> None:
        """`lock` for many subjects in one statement, in key order (auto-assignment's batches)."""
        ids = sorted(set(subject_ids))
        if not ids:
            return
        if self.session.get_bind().dialect.name != "postgresql":
            self.lock(ids[0])  # SQLite: the first write holds the database's write lock
            return
        keys = sorted(
            {
                int.from_bytes(hashlib.sha256(i.encode()).digest()[:4], "big", signed=True)
                for i in ids
            }
        )
        self.session.execute(
            text(
                "SELECT pg_advisory_xact_lock(:space, k) "
                "FROM unnest(CAST(:keys AS integer[])) AS k ORDER BY k"
            ),
            {"space": _LOCK_NAMESPACE, "keys": keys},
        )

    def subject(self, subject_id: str) -> Subject:
        """The subject as the directory has it; a bare id if the directory lacks it."""
        try:
            return DirectoryService(self.session).resolve_subject(subject_id)
        except NotFoundError:
            return Subject(id=subject_id)

    def conflicts(
        self,
        subject: Subject,
        package: str,
        *,
        counting: tuple[str, ...],
        exclude: str | None = None,
        now: datetime,
    ) -> list[Conflict]:
        """What stops `subject` from holding `package` under the active version.

        Args:
            subject: as the rules see them (their groups count as they are).
            counting: the request states whose packages count as held besides the
                assignments in HELD_STATES (FILING or APPROVED).
            exclude: the request being checked, which never conflicts with itself.
        """
        policy = self.runtime.active if self.runtime else None
        if policy is None or package not in policy.bundle.packages:
            return []
        held = self._held(subject, package, counting=counting, exclude=exclude)
        probe = dataclasses.replace(subject, packages=subject.packages | held.keys())
        decision = self.runtime.decide(package, probe, RequestOptions(), now=now)
        name = policy.bundle.packages[package].display_name
        found = []
        for rule in decision.matched:
            conflict = _conflict(policy.bundle, rule, decision.version, held, name)
            if conflict is not None:
                found.append(conflict)
        return found

    def _held(
        self, subject: Subject, package: str, *, counting: tuple[str, ...], exclude: str | None
    ) -> dict[str, tuple[str, str, str | None]]:
        """The other packages `subject` holds or has asked for, as package -> (via, id, detail):
        an assignment names a package better than a request does."""
        held: dict[str, tuple[str, str, str | None]] = {}
        requests = self.session.execute(
            select(AccessRequest.package, AccessRequest.id, AccessRequest.state)
            .where(
                AccessRequest.subject_id == subject.id,
                AccessRequest.state.in_(counting),
                AccessRequest.package != package,
                AccessRequest.id != (exclude or ""),
            )
            .order_by(AccessRequest.created_at, AccessRequest.id)
        )
        for other, request_id, state in requests:
            held.setdefault(other, ("request", request_id, state))
        assignments = self.session.execute(
            select(Assignment.package, Assignment.id, Assignment.request_id)
            .where(
                Assignment.subject_id == subject.id,
                Assignment.state.in_(HELD_STATES),
                Assignment.package != package,
            )
            .order_by(Assignment.starts_at, Assignment.id)
        )
        for other, assignment_id, request_id in assignments:
            if held.get(other, ("",))[0] != "assignment":  # an assignment names it best
                held[other] = ("assignment", assignment_id, request_id)
        return held

    def violations(
        self,
        actor: Actor,
        *,
        subject: str | None = None,
        package: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[Violation], int]:
        """People who hold incompatible access now under the active version, one row per
        conflicting pair, ordered by person, package and what it conflicts with.

        Args:
            subject: only this person's conflicts.
            package: only conflicts this package is part of (on either side).

        Raises:
            ForbiddenError: for anyone but an admin or an auditor.
            NotFoundError: no policy version is active.
        """
        if actor.role not in (Role.ADMIN, Role.AUDITOR):
            raise ForbiddenError("the separation-of-duties report is for admins and auditors")
        bundle = self._bundle()
        query = _violations_query(bundle, subject, package)
        if query is None:
            return [], 0
        total, more_than = count_page(self.session, query, offset, limit)
        found = Rows()
        found.more_than = more_than
        if offset < total:
            rows = self.session.execute(query.offset(offset).limit(limit))
            found.extend(_violation(bundle, row) for row in rows)
        return found, total

    def all_violations(
        self, actor: Actor, *, batch: int = 500, **filters: str | None
    ) -> Iterator[Violation]:
        """Every violation (`subject`, `package` filter as in `violations`), read a page at
        a time (the CLI's report)."""
        offset = 0
        while True:
            found, total = self.violations(actor, offset=offset, limit=batch, **filters)
            yield from found
            offset += len(found)
            if not found or offset >= total:
                return

    def _bundle(self) -> Bundle:
        policy = self.runtime.active if self.runtime else None
        if policy is not None:
            return policy.bundle
        versions = VersionService(self.session)
        active = versions.active_id()
        if active is None:
            raise NotFoundError("no policy version is active; publish one first")
        return versions.bundle(active)


def _conflict(
    bundle: Bundle,
    rule: str,
    version: str,
    held: dict[str, tuple[str, str, str | None]],
    name: str,
) -> Conflict | None:
    """The conflict a matched separation-of-duties rule names, or None for any other rule."""
    if rule.startswith(SOD_PACKAGE):
        other = rule.removeprefix(SOD_PACKAGE)
        via, via_id, detail = held.get(other, (None, None, None))
        return Conflict(
            rule=rule,
            version=version,
            kind="package",
            other=other,
            via=via,
            via_id=via_id,
            reason=_package_reason(bundle, other, via, via_id, detail, name),
        )
    if rule.startswith(SOD_GROUP):
        group = rule.removeprefix(SOD_GROUP)
        return Conflict(
            rule=rule,
            version=version,
            kind="group",
            other=group,
            via=None,
            via_id=None,
            reason=f"member of group {group}, which is incompatible with {name!r}",
        )
    return None


def _package_reason(
    bundle: Bundle,
    other: str,
    via: str | None,
    via_id: str | None,
    detail: str | None,
    name: str,
) -> str:
    other_name = bundle.packages[other].display_name if other in bundle.packages else other
    if via == "assignment":
        held = f"holds {other_name!r} ({other}) through assignment {via_id}"
        held += f" (request {detail})" if detail else ""
    elif via == "request":
        held = f"request {via_id} ({detail}) asks for {other_name!r} ({other})"
    else:  # known to the directory alone
        held = f"holds {other_name!r} ({other})"
    return f"{held}, which is incompatible with {name!r}"


def incompatible_pairs(bundle: Bundle) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(package, package) pairs, each once in sorted order, and (package, group) pairs."""
    packages = sorted(
        {
            tuple(sorted((package.id, other)))
            for package in bundle.packages.values()
            for other in package.incompatible_with
        }
    )
    groups = sorted(
        (package.id, group)
        for package in bundle.packages.values()
        for group in dict.fromkeys(package.incompatible_groups)
    )
    return packages, groups  # type: ignore[return-value]


def _violations_query(bundle: Bundle, subject: str | None, package: str | None) -> Select | None:
    package_pairs, group_pairs = incompatible_pairs(bundle)
    parts = []
    if package_pairs:
        first, second = aliased(Assignment), aliased(Assignment)
        parts.append(
            select(
                first.subject_id.label("subject_id"),
                first.package.label("package"),
                first.id.label("assignment_id"),
                literal("package").label("kind"),
                second.package.label("conflicts_with"),
                second.id.label("other_assignment_id"),
            )
            .join(second, second.subject_id == first.subject_id)
            .where(
                first.package.in_({pair[0] for pair in package_pairs}),
                second.package.in_({pair[1] for pair in package_pairs}),
                tuple_(first.package, second.package).in_(package_pairs),
                first.state.in_(HELD_STATES),
                second.state.in_(HELD_STATES),
            )
        )
    if group_pairs:
        parts.append(
            select(
                Assignment.subject_id.label("subject_id"),
                Assignment.package.label("package"),
                Assignment.id.label("assignment_id"),
                literal("group").label("kind"),
                Membership.group_id.label("conflicts_with"),
                null().label("other_assignment_id"),
            )
            .join(Membership, Membership.user_id == Assignment.subject_id)
            .where(
                Assignment.package.in_({pair[0] for pair in group_pairs}),
                tuple_(Assignment.package, Membership.group_id).in_(group_pairs),
                Assignment.state.in_(HELD_STATES),
            )
        )
    if not parts:
        return None
    rows = union_all(*parts).subquery()
    query = select(rows)
    if subject is not None:
        query = query.where(rows.c.subject_id == subject)
    if package is not None:
        query = query.where((rows.c.package == package) | (rows.c.conflicts_with == package))
    return query.order_by(
        rows.c.subject_id, rows.c.package, rows.c.kind, rows.c.conflicts_with, rows.c.assignment_id
    )


def _violation(bundle: Bundle, row: Any) -> Violation:
    package = bundle.packages[row.package]
    if row.kind == "package":
        other = bundle.packages[row.conflicts_with]
        rule = f"{SOD_PACKAGE}{other.id}"
        reason = (
            f"holds {package.display_name!r} (assignment {row.assignment_id}) and "
            f"{other.display_name!r} (assignment {row.other_assignment_id}), which are "
            "incompatible"
        )
    else:
        rule = f"{SOD_GROUP}{row.conflicts_with}"
        reason = (
            f"holds {package.display_name!r} (assignment {row.assignment_id}) and is a member "
            f"of group {row.conflicts_with}, which is incompatible with it"
        )
    return Violation(
        subject_id=row.subject_id,
        package=row.package,
        assignment_id=row.assignment_id,
        kind=row.kind,
        conflicts_with=row.conflicts_with,
        other_assignment_id=row.other_assignment_id,
        rule=rule,
        version=bundle.version.id,
        reason=reason,
    )
