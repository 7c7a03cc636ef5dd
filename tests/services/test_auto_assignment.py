"""Auto-assignment: the directory marks users, the worker's sweep assigns and unassigns them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.connectors.config import Connectors, load_instances
from policyd.domain import RequestOptions
from policyd.periodic import TaskContext
from policyd.rules import load_texts
from policyd.rules.auto_assign import AUTO_RULE
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.auto_assign_preview import preview
from policyd.services.auto_assign_queue import done, mark_dirty, queued, take
from policyd.services.auto_assignment import sweep
from policyd.services.directory import DirectoryService
from policyd.services.directory_import import import_directory, parse_json_directory
from policyd.services.errors import ConflictError
from policyd.services.leavers import LeaverService
from policyd.services.memberships import DirectoryMemberships
from policyd.services.requests import RequestService
from policyd.store import Database
from policyd.store.models import (
    AccessRequest,
    Assignment,
    AuditRecord,
    DecisionRecord,
    Job,
    Membership,
)
from tests.conftest import rule_file
from tests.review_support import NOW, World, make_world

GROUP = "CRM.Users"


ASK_OLIVIA = '{decision: require_approval, approval: {stages: [{approvers: ["user:olivia"]}]}}'


def crm(
    grace: str | None = "P7D",
    when: str = "{subject.department: Sales}",
    then: str = "{decision: auto_approve}",
) -> str:
    grace_line = f"\n            grace: {grace}" if grace else ""
    return rule_file(
        f"""
        apiVersion: policyd/v1
        package:
          id: crm
          displayName: CRM
          lifetime: {{duration: P30D}}
          resources:
            - {{connector: directory, resource: "group:{GROUP}", role: member}}
          rules:
            - id: anyone
              then: {then}
          autoAssign:
            when: {when}{grace_line}
        """
    )


@pytest.fixture
def world(store: Database) -> Iterator[World]:
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    made = make_world(store, connectors, crm())
    made.people({"sam": {"department": "Sales"}, "ed": {"department": "Engineering"}})
    yield made
    connectors.close()
    made.runtime.close()


def put(world: World, user: str, department: str | None, now=NOW) -> None:
    with world.session() as session:
        DirectoryService(session).put_user(
            SYSTEM, user, {"department": department}, now=now, keep_missing=True
        )
        session.commit()


def live(world: World, user: str = "sam") -> list[Assignment]:
    with world.session() as session:
        return list(
            session.scalars(
                select(Assignment).where(
                    Assignment.subject_id == user,
                    Assignment.state.in_(("delivering", "active", "failed")),
                )
            )
        )


def members(world: World) -> set[str]:
    with world.session() as session:
        return set(session.scalars(select(Membership.user_id).where(Membership.group_id == GROUP)))


def actions(world: World, action: str) -> list[AuditRecord]:
    with world.session() as session:
        return list(session.scalars(select(AuditRecord).where(AuditRecord.action == action)))


def test_a_matching_user_gets_the_package_in_one_sweep_audited_as_the_system(world: World):
    counts = world.worker.sweep(now=NOW)
    assert counts["auto_added"] == 1
    (assignment,) = live(world)
    assert (assignment.origin, assignment.state, assignment.rule) == ("auto", "active", AUTO_RULE)
    assert assignment.expires_at is None
    assert members(world) == {"sam"}
    assert live(world, "ed") == []
    (record,) = actions(world, "request.auto_assigned")
    assert (record.actor, record.version) == ("system", world.runtime.active.version)
    with world.session() as session:
        request = session.get(AccessRequest, assignment.request_id)
        decision = session.get(DecisionRecord, assignment.decision_id)
        assert (request.principal, request.state) == ("system", "delivered")
        assert (decision.rule, decision.outcome) == (AUTO_RULE, "auto_approve")
    assert "auto_added" not in world.worker.sweep(now=NOW)  # nothing queued any more


def test_who_stops_matching_keeps_access_for_the_grace_period_then_loses_it(world: World):
    world.worker.sweep(now=NOW)
    put(world, "sam", "Engineering")
    assert world.worker.sweep(now=NOW)["auto_graced"] == 1
    (assignment,) = live(world)
    assert assignment.expires_at == NOW + timedelta(days=7)
    assert members(world) == {"sam"}
    (record,) = actions(world, "assignment.auto_unmatched")
    assert record.actor == "system"
    world.worker.sweep(now=NOW + timedelta(days=7))
    assert live(world) == []
    assert members(world) == set()


def test_matching_again_within_the_grace_period_keeps_the_access(world: World):
    world.worker.sweep(now=NOW)
    put(world, "sam", "Engineering")
    world.worker.sweep(now=NOW)
    put(world, "sam", "Sales", now=NOW + timedelta(days=1))
    assert world.worker.sweep(now=NOW + timedelta(days=1))["auto_rematched"] == 1
    world.worker.sweep(now=NOW + timedelta(days=8))
    (assignment,) = live(world)
    assert assignment.expires_at is None
    assert members(world) == {"sam"}


def test_without_a_grace_period_access_ends_at_once(world: World):
    world.publish(crm(grace=None))
    world.worker.sweep(now=NOW)
    put(world, "sam", None)
    assert world.worker.sweep(now=NOW)["auto_removed"] == 1
    assert live(world) == []
    assert members(world) == set()
    assert [r.actor for r in actions(world, "assignment.auto_removed")] == ["system"]


def test_requested_access_to_the_package_is_left_alone(world: World):
    """ed requested crm; matching adds no second assignment, and ed keeps the requested one
    after no longer matching."""
    (requested,) = world.grant("crm", "ed")
    put(world, "ed", "Sales")
    world.worker.sweep(now=NOW)
    assert [a.id for a in live(world, "ed")] == [requested]
    put(world, "ed", "Engineering")
    world.worker.sweep(now=NOW + timedelta(days=10))
    assert [a.id for a in live(world, "ed")] == [requested]
    assert "ed" in members(world)


def test_auto_assigned_access_is_not_removed_by_hand(world: World):
    world.worker.sweep(now=NOW)
    (assignment,) = live(world)
    with world.session() as session, pytest.raises(ConflictError) as raised:
        AssignmentService(session, world.runtime).remove(
            Actor("root", Role.ADMIN), assignment.id, now=NOW
        )
    assert raised.value.field == "id"


def test_a_leaver_loses_auto_assigned_access_and_gets_it_back_when_enabled(world: World):
    world.worker.sweep(now=NOW)
    with world.session() as session:
        LeaverService(session, world.runtime).disable_user(SYSTEM, "sam", now=NOW)
    world.worker.sweep(now=NOW)
    assert live(world) == [] and members(world) == set()
    with world.session() as session:
        LeaverService(session, world.runtime).enable_user(SYSTEM, "sam", now=NOW)
    world.worker.sweep(now=NOW)
    assert [a.origin for a in live(world)] == ["auto"]


def test_a_publish_that_changes_the_rule_re_evaluates_everyone_in_batches(world: World):
    world.worker.sweep(now=NOW)
    world.people({f"rep{n}": {"department": "Support"} for n in range(5)})
    world.worker.sweep(now=NOW)
    world.publish(crm(when="{subject.department: {in: [Sales, Support]}}"))
    context = TaskContext(sessions=world.database.session, runtime=world.runtime)
    counts = sweep(context, NOW, limit=2)
    assert counts["queued"] == 7  # everyone in the directory
    assert counts["added"] == 5
    assert len(actions(world, "auto_assign.rules_changed")) == 2  # first sight, then the change
    assert sweep(context, NOW, limit=2)["queued"] == 0  # followed already


def test_the_preview_counts_what_a_version_would_add_and_remove(world: World):
    world.worker.sweep(now=NOW)
    world.people({"rep": {"department": "Support"}})
    world.worker.sweep(now=NOW)
    candidate = load_texts({"crm.yaml": crm(when="{subject.department: Support}")})
    with world.session() as session:
        report = preview(session, world.runtime, candidate, now=NOW).to_dict()
    assert report["users"] == 3
    (row,) = report["packages"]
    assert (row["package"], row["would_add"], row["would_remove"]) == ("crm", 1, 1)
    assert (row["unchanged"], row["grace"]) == (0, "P7D")
    assert len(live(world)) == 1  # nothing was written


def test_a_mark_renewed_while_a_sweep_reads_the_user_stays_queued(world: World):
    with world.session() as session:
        mark_dirty(session, ["sam"], now=NOW)
        session.commit()
        taken = take(session, 10)
        mark_dirty(session, ["sam"], now=NOW)  # changed again meanwhile
        done(session, taken)
        assert queued(session) == 1


def test_a_directory_import_marks_whom_it_changed_and_the_sweep_assigns_them(world: World):
    world.worker.sweep(now=NOW)
    text = json.dumps(
        {
            "users": [{"id": "ed", "department": "Sales"}, {"id": "ivy", "department": "Sales"}],
            "groups": [{"id": "Staff", "members": ["ivy"]}],
        }
    )
    with world.session() as session:
        import_directory(parse_json_directory(text, "people.json"), session, SYSTEM, now=NOW)
        # ed and ivy; sam too, whom the directory connector put in CRM.Users (a group change)
        assert queued(session) == 3
    assert world.worker.sweep(now=NOW)["auto_added"] == 2
    assert members(world) == {"sam", "ed", "ivy"}


def test_when_requested_access_ends_a_matching_holder_gets_it_auto_assigned(world: World):
    """ed requested crm before moving to Sales; when it expires, auto-assignment takes over."""
    (requested,) = world.grant("crm", "ed")
    put(world, "ed", "Sales")
    world.worker.sweep(now=NOW)
    assert [a.id for a in live(world, "ed")] == [requested]
    ended = NOW + timedelta(days=30)
    world.worker.sweep(now=ended)  # expiry ends it and marks ed; the revoke runs
    world.worker.sweep(now=ended)  # ed is evaluated once the revoke is done
    (auto,) = live(world, "ed")
    assert auto.origin == "auto" and auto.id != requested
    assert "ed" in members(world)


def ask(world: World, user: str = "ed") -> str:
    """`user` asks for crm, which olivia approves; the request's id."""
    with world.session() as session:
        request, _ = RequestService(session, world.runtime).create(
            Actor(user, Role.USER), "crm", user, None, RequestOptions(), now=NOW
        )
        assert request.state == "pending_approval"
        return request.id


def approve(world: World, request_id: str) -> str:
    """olivia approves; the request's state after (a ConflictError's field if refused)."""
    with world.session() as session:
        try:
            return (
                RequestService(session, world.runtime)
                .decide_stage(
                    Actor("olivia", Role.USER), request_id, "approve", comment=None, now=NOW
                )
                .state
            )
        except ConflictError as refused:
            return f"refused: {refused.field}"


@pytest.fixture
def asked(world: World) -> str:
    """crm asks olivia; ed, in Engineering, has asked for it, and then moves to Sales."""
    world.publish(crm(then=ASK_OLIVIA))
    world.people({"olivia": {}})
    request_id = ask(world)
    put(world, "ed", "Sales")
    return request_id


def test_auto_assigning_cancels_the_holders_pending_request_for_the_package(
    world: World, asked: str
):
    """The sweep cancels ed's request, audited with why; approving it later is refused."""
    assert world.worker.sweep(now=NOW)["auto_superseded"] == 1
    with world.session() as session:
        request = session.get(AccessRequest, asked)
        assert request.state == "canceled" and "autoAssign" in request.reason
    (record,) = [r for r in actions(world, "request.canceled") if r.object_id == asked]
    assert (record.actor, record.version) == ("system", world.runtime.active.version)
    assert approve(world, asked) == "refused: state"
    assert [a.origin for a in live(world, "ed")] == ["auto"]
    with world.session() as session:  # ed is told why the request ended
        told = session.scalars(
            select(Job.subject_id).where(Job.resource == f"request_decided:{asked}")
        ).all()
    assert told == ["ed"]


def test_an_approval_held_while_the_sweep_runs_never_makes_a_second_assignment(
    world: World, asked: str
):
    """olivia's approval holds ed's request while the sweep auto-assigns crm: whichever
    cancels the request (the sweep, or the approval finding the access in place), ed ends
    with one live assignment of crm, the auto-assigned one."""
    with world.session() as approver:
        approver.execute(
            select(AccessRequest.id).where(AccessRequest.id == asked).with_for_update()
        )  # as decide_stage takes it first
        assert world.worker.sweep(now=NOW)["auto_added"] == 2  # sam and ed
        try:
            state = (
                RequestService(approver, world.runtime)
                .decide_stage(Actor("olivia", Role.USER), asked, "approve", comment=None, now=NOW)
                .state
            )
        except ConflictError as refused:
            state = f"refused: {refused.field}"
    world.worker.run_jobs(now=NOW, limit=100)
    assert [a.origin for a in live(world, "ed")] == ["auto"]
    with world.session() as session:
        request = session.get(AccessRequest, asked)
        assert request.state == "canceled"
    # PostgreSQL: the sweep skips the held request, whose approval then cancels it. SQLite
    # has no row locks: the sweep cancels it, and the approval is refused.
    assert state == ("refused: state" if world.database.is_sqlite else "canceled")


def test_auto_assigned_access_in_its_grace_period_is_not_extended(world: World):
    """sam left Sales; asking for more time is refused naming `origin`, and nothing is filed."""
    world.worker.sweep(now=NOW)
    put(world, "sam", "Engineering")
    world.worker.sweep(now=NOW)
    (assignment,) = live(world)
    assert assignment.expires_at == NOW + timedelta(days=7)
    with world.session() as session, pytest.raises(ConflictError) as raised:
        RequestService(session, world.runtime).extend(
            Actor("sam", Role.USER), assignment.id, RequestOptions(), now=NOW
        )
    assert raised.value.field == "origin"
    assert world.count(AccessRequest, subject_id="sam") == 1  # the system's, auto-assigned
