"""Separation of duties: checked at filing, at each approval and at delivery; the report."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policyd.connectors.config import Connectors, load_instances
from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, load_texts
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.directory import DirectoryService
from policyd.services.errors import ConflictError, ForbiddenError
from policyd.services.memberships import DirectoryMemberships
from policyd.services.requests import RequestService
from policyd.services.sod import SodService
from policyd.store import Database
from policyd.store.models import AccessRequest, Approval, Assignment, AuditRecord, Job
from policyd.worker import Worker
from tests.conftest import rule_file

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OLIVIA = Actor("olivia", Role.USER)


def package(pid: str, name: str, decision: str = "approval", extra: str = "") -> str:
    then = (
        "{decision: auto_approve}"
        if decision == "auto"
        else '{decision: require_approval, approval: {stages: [{approvers: ["user:olivia"]}]}}'
    )
    return rule_file(
        f"""
        apiVersion: policyd/v1
        package:
          id: {pid}
          displayName: {name}
          lifetime: {{duration: P30D, extendable: true}}
          resources:
            - {{connector: directory, resource: "group:{name}", role: member}}
          {extra}
          rules:
            - id: anyone
              then: {then}
        """
    )


def bundle(*, sod: bool = True, groups: bool = True):
    """Payments approval is incompatible with payments creation (declared on one side only)
    and with the Payments.Clerks group; expenses is auto-approved and incompatible with
    payments creation."""
    declared = "incompatibleWith: [payments-creation]" if sod else ""
    if groups:
        declared += "\n          incompatibleGroups: [Payments.Clerks]"
    texts = {
        "approval.yaml": package("payments-approval", "Payments approval", extra=declared),
        "creation.yaml": package("payments-creation", "Payments creation"),
        "expenses.yaml": package(
            "expenses",
            "Expenses",
            "auto",
            "incompatibleWith: [payments-creation]" if sod else "",
        ),
        "travel.yaml": package("travel", "Travel"),
    }
    return load_texts(texts)


@dataclass
class World:
    database: Database
    runtime: PolicyRuntime
    worker: Worker

    def session(self) -> Session:
        return self.database.session()

    def file(self, package: str, subject: str = "pat") -> AccessRequest:
        with self.session() as session:
            request, _ = RequestService(session, self.runtime).create(
                SYSTEM, package, subject, None, RequestOptions(), now=NOW
            )
            return request

    def approve(self, request_id: str) -> AccessRequest:
        """Approve, and deliver through the directory connector as a worker would."""
        with self.session() as session:
            RequestService(session, self.runtime).decide_stage(
                OLIVIA, request_id, "approve", comment=None, now=NOW
            )
        self.worker.run_jobs(now=NOW, limit=1000)
        return self.request(request_id)

    def request(self, request_id: str) -> AccessRequest:
        with self.session() as session:
            return session.get(AccessRequest, request_id)

    def count(self, model, **where) -> int:
        with self.session() as session:
            query = select(func.count()).select_from(model).filter_by(**where)
            return session.scalar(query)

    def join(self, group: str, user: str) -> None:
        with self.session() as session:
            directory = DirectoryService(session)
            directory.put_group(SYSTEM, group, None, now=NOW)
            directory.add_member(SYSTEM, group, user, now=NOW)
            session.commit()


@pytest.fixture
def world(store: Database) -> Iterator[World]:
    runtime = PolicyRuntime(bundle())
    with store.session() as session:
        directory = DirectoryService(session)
        for user in ("pat", "olivia", "quinn"):
            directory.put_user(SYSTEM, user, {"department": "Finance"}, now=NOW)
        session.commit()
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    yield World(store, runtime, Worker(store.session, connectors, runtime))
    connectors.close()
    runtime.close()


def test_filing_counts_a_pending_request_for_an_incompatible_package(world):
    """A request filed while one for an incompatible package waits is denied, naming it."""
    first = world.file("payments-creation")
    assert first.state == "pending_approval"
    second = world.file("payments-approval")
    assert second.state == "denied"
    assert second.rule == "incompatible:payments-creation"
    assert f"request {first.id} (pending_approval)" in second.reason
    assert "'Payments creation' (payments-creation)" in second.reason


def test_the_created_event_of_a_request_refused_at_filing_says_deny(world):
    """Webhook listeners hear request.created with decision deny, not the rules' approval."""
    world.file("payments-creation")
    with world.session() as session:
        service = RequestService(session, world.runtime, frozenset({"directory"}))
        denied, _ = service.create(
            SYSTEM, "payments-approval", "pat", None, RequestOptions(), now=NOW
        )
        payload = session.scalar(
            select(Job.payload).where(Job.kind == "send", Job.role == "request.created")
        )
    assert denied.state == "denied"
    assert payload["decision"] == "deny" and payload["request"]["id"] == denied.id


def test_filing_counts_a_live_assignment_and_names_it(world):
    """Holding an incompatible package denies a new request, naming assignment and request."""
    held = world.approve(world.file("payments-creation").id)
    assert held.state == "delivered"
    assignment = world.count(Assignment, request_id=held.id, state="active")
    assert assignment == 1
    with world.session() as session:
        assignment_id = session.scalar(
            select(Assignment.id).where(Assignment.request_id == held.id)
        )
    denied = world.file("payments-approval")
    assert denied.state == "denied"
    assert f"through assignment {assignment_id} (request {held.id})" in denied.reason


def test_incompatibility_declared_on_one_side_holds_on_both(world):
    """payments-approval lists payments-creation; a holder of approval cannot file creation."""
    world.approve(world.file("payments-approval").id)
    denied = world.file("payments-creation")
    assert (denied.state, denied.rule) == ("denied", "incompatible:payments-approval")


def test_the_second_approval_of_two_pending_incompatible_requests_is_refused(world):
    """Both filed before the rule existed: the first approval delivers, the second is
    refused naming the first, and its request is denied with the rule and version."""
    world.runtime.activate(bundle(sod=False, groups=False))
    first = world.file("payments-creation")
    second = world.file("payments-approval")
    assert first.state == second.state == "pending_approval"
    world.runtime.activate(bundle())  # the incompatibility is published
    assert world.approve(first.id).state == "delivered"
    with pytest.raises(ConflictError) as refused:
        world.approve(second.id)
    assert refused.value.field == "package"
    assert f"request {first.id}" in refused.value.message
    assert "payments-creation" in refused.value.message
    after = world.request(second.id)
    assert (after.state, after.rule) == ("denied", "incompatible:payments-creation")
    assert after.version == world.runtime.active.version
    assert world.count(Approval, request_id=second.id) == 0  # the approval is not recorded
    assert world.count(Assignment, request_id=second.id) == 0


def test_a_refused_approval_is_audited_with_who_and_the_rule_version(world):
    """The denial's audit record names the approver and the version whose rule refused."""
    world.runtime.activate(bundle(sod=False, groups=False))
    first, second = world.file("payments-creation"), world.file("payments-approval")
    world.runtime.activate(bundle())
    world.approve(first.id)
    with pytest.raises(ConflictError):
        world.approve(second.id)
    with world.session() as session:
        record = session.scalars(
            select(AuditRecord).where(
                AuditRecord.object_id == second.id, AuditRecord.action == "request.denied"
            )
        ).one()
    assert record.actor == "olivia"
    assert record.version == world.runtime.active.version
    assert record.after["rule"] == "incompatible:payments-creation"


def test_an_approver_may_still_deny_a_conflicting_request(world):
    """Separation of duties refuses approvals only; a deny verdict is recorded as usual."""
    world.runtime.activate(bundle(sod=False, groups=False))
    first, second = world.file("payments-creation"), world.file("payments-approval")
    world.runtime.activate(bundle())
    world.approve(first.id)
    with world.session() as session:
        denied = RequestService(session, world.runtime).decide_stage(
            OLIVIA, second.id, "deny", comment="no", now=NOW
        )
    assert (denied.state, denied.reason) == ("denied", "no")


def test_filing_denies_a_member_of_an_incompatible_group(world):
    """incompatibleGroups: a member of Payments.Clerks is denied payments approval."""
    world.join("Payments.Clerks", "pat")
    denied = world.file("payments-approval")
    assert (denied.state, denied.rule) == ("denied", "incompatible-group:Payments.Clerks")
    assert "member of group Payments.Clerks" in denied.reason


def test_approval_is_refused_once_the_requester_joined_an_incompatible_group(world):
    """Group membership gained after filing is checked again when the request is approved."""
    waiting = world.file("payments-approval")
    world.join("Payments.Clerks", "pat")
    with pytest.raises(ConflictError, match=r"Payments\.Clerks"):
        world.approve(waiting.id)
    assert world.request(waiting.id).rule == "incompatible-group:Payments.Clerks"


def test_auto_approval_is_refused_before_any_grant_job_is_written(world):
    """An auto-approved package that conflicts is denied without an assignment or a job."""
    world.approve(world.file("payments-creation").id)
    grants = world.count(Job, kind="grant")
    denied = world.file("expenses")
    assert (denied.state, denied.rule) == ("denied", "incompatible:payments-creation")
    assert world.count(Assignment, request_id=denied.id) == 0
    assert world.count(Job, kind="grant") == grants


def test_an_extension_is_refused_while_an_incompatible_package_is_held(world):
    """Both held from before the rule: asking for more time on one of them is denied."""
    world.runtime.activate(bundle(sod=False, groups=False))
    held = [world.approve(world.file(p).id) for p in ("payments-creation", "payments-approval")]
    world.runtime.activate(bundle())
    with world.session() as session:
        assignment = session.scalar(
            select(Assignment.id).where(Assignment.request_id == held[1].id)
        )
        extension, _ = RequestService(session, world.runtime).extend(
            SYSTEM, assignment, RequestOptions(), now=NOW
        )
    assert (extension.state, extension.rule) == ("denied", "incompatible:payments-creation")


def test_unrelated_packages_are_unaffected(world):
    """Travel conflicts with nothing: held and pending packages do not stop it."""
    world.file("payments-creation")
    assert world.file("travel").state == "pending_approval"


def test_concurrent_approvals_of_incompatible_requests_never_both_succeed(world):
    """Two approvers at once, one per incompatible request: exactly one is delivered."""
    world.runtime.activate(bundle(sod=False, groups=False))
    requests = [world.file("payments-creation").id, world.file("payments-approval").id]
    world.runtime.activate(bundle())
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def approve(request_id: str) -> None:
        with world.session() as session:
            service = RequestService(session, world.runtime)
            barrier.wait()
            try:
                service.decide_stage(OLIVIA, request_id, "approve", comment=None, now=NOW)
                outcomes[request_id] = "approved"
            except ConflictError:
                outcomes[request_id] = "refused"

    threads = [threading.Thread(target=approve, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.worker.run_jobs(now=NOW, limit=1000)
    assert sorted(outcomes.values()) == ["approved", "refused"]
    states = sorted(world.request(r).state for r in requests)
    assert states == ["delivered", "denied"]
    assert world.count(Assignment, subject_id="pat") == 1


def test_concurrent_filings_for_incompatible_packages_never_both_pass(world):
    """Two filings at once, one auto-approved: the later one sees the other and is denied."""
    barrier = threading.Barrier(2)
    states: dict[str, str] = {}

    def file(package: str) -> None:
        with world.session() as session:
            service = RequestService(session, world.runtime)
            barrier.wait()
            request, _ = service.create(SYSTEM, package, "pat", None, RequestOptions(), now=NOW)
            states[package] = request.state

    threads = [threading.Thread(target=file, args=(p,)) for p in ("expenses", "payments-creation")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(states.values()) in (
        ["delivering", "denied"],  # expenses first: delivered (its jobs not yet run)
        ["denied", "pending_approval"],  # payments creation first: waiting
    )


def test_a_second_transaction_waits_for_the_subjects_lock_until_the_first_commits(world):
    """The per-person lock holds until commit, on PostgreSQL and on SQLite alike."""
    locked, events = threading.Event(), []

    def first() -> None:
        with world.session() as session:
            SodService(session).lock("pat")
            locked.set()
            time.sleep(0.3)
            events.append("first commits")
            session.commit()

    holder = threading.Thread(target=first)
    holder.start()
    locked.wait()
    with world.session() as session:
        SodService(session).lock("pat")
        events.append("second holds it")
        session.commit()
    holder.join()
    assert events == ["first commits", "second holds it"]


def test_the_report_lists_incompatible_packages_and_groups_held_now(world):
    """Access from before the rule: both packages live, and a package plus the group."""
    world.runtime.activate(bundle(sod=False, groups=False))
    for pid in ("payments-creation", "payments-approval"):
        world.approve(world.file(pid).id)
    world.approve(world.file("payments-approval", "quinn").id)
    world.join("Payments.Clerks", "quinn")
    world.runtime.activate(bundle())
    with world.session() as session:
        found, total = SodService(session, world.runtime).violations(SYSTEM)
    assert total == 2
    rows = [(v.subject_id, v.package, v.kind, v.conflicts_with, v.rule) for v in found]
    assert rows == [
        (
            "pat",
            "payments-approval",
            "package",
            "payments-creation",
            "incompatible:payments-creation",
        ),
        (
            "quinn",
            "payments-approval",
            "group",
            "Payments.Clerks",
            "incompatible-group:Payments.Clerks",
        ),
    ]
    assert found[0].other_assignment_id and found[1].other_assignment_id is None
    assert all(v.version == world.runtime.active.version for v in found)


def test_the_report_pages_with_a_total(world):
    """offset and limit give one page; the total counts every conflict."""
    world.runtime.activate(bundle(sod=False, groups=False))
    for subject in ("pat", "quinn"):
        for pid in ("payments-creation", "payments-approval"):
            world.approve(world.file(pid, subject).id)
    world.runtime.activate(bundle())
    with world.session() as session:
        found, total = SodService(session, world.runtime).violations(SYSTEM, offset=1, limit=1)
    assert total == 2
    assert [v.subject_id for v in found] == ["quinn"]


def test_the_report_filters_by_person_and_by_package_on_either_side(world):
    """subject= keeps one person's rows; package= keeps rows naming it on either side."""
    world.runtime.activate(bundle(sod=False, groups=False))
    for pid in ("payments-creation", "payments-approval"):
        world.approve(world.file(pid).id)
    world.approve(world.file("payments-approval", "quinn").id)
    world.join("Payments.Clerks", "quinn")
    world.runtime.activate(bundle())
    with world.session() as session:
        service = SodService(session, world.runtime)
        mine, total = service.violations(SYSTEM, subject="quinn")
        assert (total, [v.kind for v in mine]) == (1, ["group"])
        creation, total = service.violations(SYSTEM, package="payments-creation")
        assert (total, [v.subject_id for v in creation]) == (1, ["pat"])
        assert service.violations(SYSTEM, package="travel") == ([], 0)


def test_ended_access_is_not_in_the_report(world):
    """Only live assignments count: access removed (and revoked) is no violation."""
    world.runtime.activate(bundle(sod=False, groups=False))
    for pid in ("payments-creation", "payments-approval"):
        world.approve(world.file(pid).id)
    world.runtime.activate(bundle())
    with world.session() as session:
        held = session.scalar(
            select(Assignment.id).where(Assignment.package == "payments-creation")
        )
        AssignmentService(session, world.runtime).remove(SYSTEM, held, now=NOW)
    world.worker.run_jobs(now=NOW, limit=1000)
    assert world.count(Assignment, id=held, state="removed") == 1
    with world.session() as session:
        assert SodService(session, world.runtime).violations(SYSTEM) == ([], 0)


def test_users_and_apps_may_not_read_the_report(world):
    """The report is for admins and auditors."""
    with world.session() as session:
        service = SodService(session, world.runtime)
        for role in (Role.USER, Role.APP):
            with pytest.raises(ForbiddenError):
                service.violations(Actor("x", role))
        assert service.violations(Actor("a", Role.AUDITOR)) == ([], 0)
