"""Auto-assignment: users who match a package's `autoAssign` rule get it without a request,
and lose it (after the rule's grace period) when they stop matching (docs/lifecycle.md)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from policyd.domain import (
    AssignmentState,
    Subject,
    UserType,
)
from policyd.periodic import TaskContext, periodic_task
from policyd.rules import PolicyRuntime
from policyd.rules.auto_assign import AutoAssigner, changed_packages, fingerprints
from policyd.services.actor import SYSTEM
from policyd.services.assignments import LIVE_STATES, AssignmentService, assignment_view
from policyd.services.audit import audit, audit_many
from policyd.services.auto_assign_queue import AUTO, done, mark_everyone, take
from policyd.services.auto_assign_rows import (
    assignment_row,
    created_records,
    decision_entry,
    grant_jobs,
    request_row,
)
from policyd.services.jobs import JobService
from policyd.services.requests import RequestService
from policyd.services.sod import SodService
from policyd.store.models import (
    AccessRequest,
    Assignment,
    AutoAssignQueue,
    DecisionRecord,
    Membership,
    OrganizationDomain,
    Setting,
    User,
)
from policyd.store.query import among, insert_many

RULES_KEY = "auto_assign.rules"  # Setting: the fingerprints of the rules last followed
BATCH = 500  # users evaluated per transaction
PASS_BATCHES = 40  # batches per pass of the worker; the rest waits for the next pass
EXPIRING = AssignmentState.EXPIRING
_INSERT_DECISION = DecisionRecord.__table__.insert()


@dataclass
class _Held:
    """What a batch of users holds of auto-assigned packages, by (user, package)."""

    auto: dict[tuple[str, str], Assignment]  # live auto-assigned access
    other: set[tuple[str, str]]  # live requested or direct access: auto-assignment stands aside
    ending: set[tuple[str, str]]  # access being removed: decide once it is gone


class AutoAssignmentService:
    def __init__(self, session: Session, runtime: PolicyRuntime):
        self.session = session
        self.runtime = runtime

    def follow_rules(self, *, now: datetime) -> int:
        """Queue every user when the active version's auto-assignment rules differ from
        those last followed (a publish changed them); commits. Returns how many are queued."""
        policy = self.runtime.active
        if policy is None:
            return 0
        current = fingerprints(policy.bundle)
        row = self.session.get(Setting, RULES_KEY, with_for_update=True)
        before = json.loads(row.value) if row is not None else {}
        if before == current:
            self.session.rollback()
            return 0
        queued = mark_everyone(self.session, now=now)
        value = json.dumps(current, sort_keys=True)
        if row is None:
            self.session.add(Setting(key=RULES_KEY, value=value, updated_at=now))
        else:
            row.value, row.updated_at = value, now
        audit(
            self.session,
            SYSTEM,
            "auto_assign.rules_changed",
            ("policy_version", policy.version),
            now=now,
            before={"packages": sorted(before)},
            after={"packages": sorted(current), "changed": changed_packages(before, current)},
            version=policy.version,
        )
        self.session.commit()
        return queued

    def evaluate(self, assigner: AutoAssigner, *, now: datetime, limit: int = BATCH) -> Counter:
        """Evaluate up to `limit` queued users against the rules of `assigner`'s version:
        assign what they match, start the grace period (or remove) what they no longer
        match; commits. Counts: taken, added, rematched, graced, removed, deferred, superseded
        (requests canceled as the access they ask for is auto-assigned)."""
        counts: Counter = Counter()
        taken = take(self.session, limit)
        counts["taken"] = len(taken)
        if not taken:
            return counts
        if not assigner.policies and not self._any_auto_live():
            # Nothing is or was auto-assigned: the marks only say the directory changed.
            self.session.execute(delete(AutoAssignQueue))
            self.session.commit()
            counts["cleared"] = len(taken)
            return counts
        ids = [subject_id for subject_id, _ in taken]
        # As a request takes it: no request grants these people anything meanwhile.
        SodService(self.session, self.runtime).lock_many(ids)
        subjects = self.subjects(ids)
        held = self._held(ids)
        deferred: set[str] = set()
        ending: list[Assignment] = []
        adding: list[tuple[Subject, str]] = []
        auto_of: dict[str, set[str]] = defaultdict(set)
        for holder, package_id in held.auto:
            auto_of[holder].add(package_id)
        for subject_id in ids:
            subject = subjects.get(subject_id)
            matched = assigner.matches(subject, now) if subject is not None else frozenset()
            for package_id in sorted(matched | auto_of[subject_id]):
                key = (subject_id, package_id)
                current = held.auto.get(key)
                if package_id in matched and current is None:
                    if key in held.ending:
                        deferred.add(subject_id)
                    elif key not in held.other:
                        adding.append((subject, package_id))
                elif package_id in matched and current is not None:
                    counts["rematched"] += self._keep(current, assigner.version, now=now)
                elif current is not None and current.expires_at is None:
                    policy = assigner.policies.get(package_id)
                    if policy is not None and policy.grace is not None:
                        self._start_grace(current, now + policy.grace, assigner.version, now)
                        counts["graced"] += 1
                    else:
                        ending.append(current)
        counts["superseded"] = self._assign_many(adding, assigner.version, now=now)
        counts["added"] = len(adding)
        AssignmentService(self.session, self.runtime).end_many(
            SYSTEM, ending, "assignment.auto_removed", now=now
        )
        counts["removed"] = len(ending)
        counts["deferred"] = len(deferred)
        done(self.session, [(s, g) for s, g in taken if s not in deferred])
        self.session.commit()
        return counts

    def _any_auto_live(self) -> bool:
        live = select(Assignment.id).where(
            Assignment.origin == AUTO, Assignment.state.in_(LIVE_STATES)
        )
        return bool(self.session.scalar(select(exists(live))))

    def _held(self, ids: list[str]) -> _Held:
        held = _Held({}, set(), set())
        rows = self.session.scalars(
            select(Assignment)
            .where(among(self.session, Assignment.subject_id, ids))
            .where(Assignment.state.in_((*LIVE_STATES, EXPIRING)))
            .order_by(Assignment.id)
            .with_for_update()
        )
        for assignment in rows:
            key = (assignment.subject_id, assignment.package)
            if assignment.state == EXPIRING:
                held.ending.add(key)
            elif assignment.origin == AUTO:
                held.auto[key] = assignment
            else:
                held.other.add(key)
        return held

    def subjects(self, ids: Iterable[str]) -> dict[str, Subject]:
        """The active users among `ids` as auto-assignment conditions see them (no held
        packages: a condition may not read them), with few statements for a whole batch."""
        ids = list(ids)
        users = self.session.execute(
            select(User).where(among(self.session, User.id, ids), User.state == "active")
        ).scalars()
        users = list(users)
        groups: dict[str, set[str]] = defaultdict(set)
        for user_id, group_id in self.session.execute(
            select(Membership.user_id, Membership.group_id).where(
                among(self.session, Membership.user_id, [u.id for u in users])
            )
        ):
            groups[user_id].add(group_id)
        domains = {u.id: u.email.rsplit("@", 1)[-1].strip().lower() for u in users if u.email}
        owners = dict(
            self.session.execute(
                select(OrganizationDomain.domain, OrganizationDomain.organization_id).where(
                    among(self.session, OrganizationDomain.domain, set(domains.values()))
                )
            ).all()
        )
        return {
            user.id: Subject(
                id=user.id,
                email=user.email,
                type=UserType(user.type),
                groups=frozenset(groups[user.id]),
                manager=user.manager_id,
                organization=user.organization_id or owners.get(domains.get(user.id, "")),
                department=user.department,
                job_title=user.job_title,
                employee_type=user.employee_type,
                attributes=dict(user.attributes or {}),
            )
            for user in users
        }

    def _assign_many(
        self, wanted: list[tuple[Subject, str]], version: str, *, now: datetime
    ) -> int:
        """For each (subject, package): an approved request of the system's, its decision in
        the log, and an assignment whose grants the outbox delivers through the connectors;
        a few statements for a whole batch. Their undecided requests for the package are
        canceled; returns how many."""
        if not wanted:
            return 0
        superseded = RequestService(self.session, self.runtime).supersede(
            SYSTEM,
            [(subject.id, package) for subject, package in wanted],
            f"auto-assigned by the package's autoAssign rule (version {version})",
            now=now,
        )
        entries = [decision_entry(subject, package, version, now) for subject, package in wanted]
        self.session.connection().execute(_INSERT_DECISION, entries)
        bundle = self.runtime.active.bundle if self.runtime.active is not None else None
        requests, assignments, records, jobs = [], [], [], []
        for entry in entries:
            request = request_row(entry, now)
            assignment = assignment_row(request, now)
            requests.append(request)
            assignments.append(assignment)
            records += created_records(request, assignment)
            package = bundle.packages.get(entry["package"]) if bundle is not None else None
            jobs += grant_jobs(package, assignment)
        insert_many(self.session, AccessRequest, requests)
        insert_many(self.session, Assignment, assignments)
        audit_many(self.session, SYSTEM, now, records)
        JobService(self.session).enqueue_many(jobs, now=now)
        AssignmentService(self.session, self.runtime).settle_many(
            [a["id"] for a in assignments], SYSTEM, now=now
        )
        return superseded

    def _start_grace(
        self, assignment: Assignment, ends: datetime, version: str, now: datetime
    ) -> None:
        """The holder stopped matching: the access expires at the end of the grace period
        (the expiry task removes it then), unless they match again before."""
        before = assignment_view(assignment)
        assignment.expires_at = ends
        audit(
            self.session,
            SYSTEM,
            "assignment.auto_unmatched",
            ("assignment", assignment.id),
            now=now,
            before=before,
            after=assignment_view(assignment),
            version=version,
        )

    def _keep(self, assignment: Assignment, version: str, *, now: datetime) -> int:
        """The holder matches (again): a grace period running ends; 1 if one did."""
        if assignment.expires_at is None:
            return 0
        before = assignment_view(assignment)
        assignment.expires_at = None
        audit_many(
            self.session,
            SYSTEM,
            now,
            [
                {
                    "action": "assignment.auto_matched",
                    "object": ("assignment", assignment.id),
                    "before": before,
                    "after": assignment_view(assignment),
                    "version": version,
                }
            ],
        )
        return 1


def sweep(context: Any, now: datetime, *, limit: int = BATCH) -> Counter:
    """Follow the rules of the active version, then evaluate queued users batch by batch."""
    with context.sessions() as session:
        counts = Counter(
            queued=AutoAssignmentService(session, context.runtime).follow_rules(now=now)
        )
    policy = context.runtime.active if context.runtime is not None else None
    if policy is None:
        return counts
    with AutoAssigner(policy.bundle) as assigner:
        for _ in range(PASS_BATCHES):
            with context.sessions() as session:
                batch = AutoAssignmentService(session, context.runtime).evaluate(
                    assigner, now=now, limit=limit
                )
            counts.update(batch)
            if batch["taken"] < limit or batch["deferred"] == batch["taken"]:
                break
    return counts


# Before expiry (order 10): a grace period this pass starts is never ended by it.
@periodic_task("auto-assign.sweep")
def sweep_auto_assignments(context: TaskContext, now: datetime) -> dict[str, int]:
    """Assign and unassign auto-assigned packages for users whose data or rules changed."""
    counts = sweep(context, now)
    named = {
        "auto_queued": counts["queued"],
        "auto_evaluated": counts["taken"] - counts["deferred"] - counts["cleared"],
        "auto_added": counts["added"],
        "auto_graced": counts["graced"],
        "auto_rematched": counts["rematched"],
        "auto_removed": counts["removed"],
        "auto_superseded": counts["superseded"],
    }
    # Only what it did: where no package auto-assigns, a pass reports nothing of this task.
    return {name: count for name, count in named.items() if count}
