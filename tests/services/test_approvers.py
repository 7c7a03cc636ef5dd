"""Approver references resolved through the directory: manager, owners, sponsors, groups."""

from __future__ import annotations

from sqlalchemy import update

from policyd.domain import RequestOptions, Subject, UserType
from policyd.services.approvers import (
    approver_ids,
    approver_refs,
    present,
    with_resolved_approvers,
)
from policyd.services.directory import DirectoryService
from policyd.store.models import User
from tests.services.conftest import ROOT


def package(runtime, package_id: str):
    return runtime.active.bundle.package(package_id)


def test_manager_and_owners_become_user_and_group_references(runtime):
    """sam's manager is user:max; sales-support's owners are its group; repeats drop."""
    sam = Subject(id="sam", manager="max")
    refs = ["manager", "owners", "group:Sales.Ops", "manager"]
    found = approver_refs(refs, sam, package(runtime, "sales-support"), session=None)
    assert found == ["user:max", "group:Sales.Ops"]


def test_no_manager_resolves_to_nobody(runtime):
    """A subject without a manager has no `manager` approver."""
    assert (
        approver_refs(["manager"], Subject(id="ada"), package(runtime, "scope-a-readers"), None)
        == []
    )


def test_sponsors_come_from_the_subjects_connected_organisation(session, runtime, people, clock):
    """A guest from fabrikam.com is approved by that organisation's sponsors."""
    DirectoryService(session).put_organization(
        ROOT,
        "fabrikam",
        {
            "display_name": "Fabrikam",
            "domains": ["fabrikam.com"],
            "internal_sponsors": ["bob"],
            "external_sponsors": ["fab-boss"],
        },
        now=clock(),
    )
    fab = Subject(id="fab", email="fab@fabrikam.com")
    refs = approver_refs(["sponsors"], fab, package(runtime, "merger-collaboration"), session)
    assert refs == ["user:bob", "user:fab-boss"]


def test_groups_expand_to_members_without_the_subject(session, runtime, people):
    """Scope A's approvers are bob, carol and ada; ada asking is never her own approver."""
    scope_a = package(runtime, "scope-a-readers")
    refs = ["group:Group.ScopeA.Approvers"]
    assert approver_ids(refs, Subject(id="ada"), scope_a, session) == ["bob", "carol"]
    assert approver_ids(refs, Subject(id="sam"), scope_a, session) == ["ada", "bob", "carol"]


def test_someone_who_left_approves_nothing(session, runtime, people):
    """A disabled approver is dropped; an id the directory does not know yet stays."""
    session.execute(update(User).where(User.id == "carol").values(state="disabled"))
    assert present(session, ["bob", "carol", "newcomer"]) == ["bob", "newcomer"]
    found = approver_ids(
        ["group:Group.ScopeA.Approvers", "user:newcomer"],
        Subject(id="sam"),
        package(runtime, "scope-a-readers"),
        session,
    )
    assert found == ["ada", "bob", "newcomer"]


def test_present_of_nobody_is_nobody(session):
    assert present(session, []) == []


def test_a_decision_the_rules_resolved_alike_is_returned_as_it_is(runtime, clock):
    """sam's manager stage (sales-support) is resolved by the rules already: the same decision
    comes back, not a copy."""
    sam = Subject(id="sam", department="Sales", manager="max")
    decision = runtime.decide("sales-support", sam, RequestOptions(), now=clock())
    assert decision.stages and decision.stages[0].resolved == ("user:max",)
    package_rules = package(runtime, "sales-support")
    assert with_resolved_approvers(decision, sam, package_rules, None) is decision


def test_a_sponsors_stage_is_resolved_through_the_directory(session, runtime, people, clock):
    """A guest's sponsors stage (merger-collaboration) names the organisation's sponsors."""
    DirectoryService(session).put_organization(
        ROOT,
        "northwind",
        {
            "display_name": "Northwind",
            "domains": ["northwind.example"],
            "internal_sponsors": ["bob"],
        },
        now=clock(),
    )
    raj = Subject(
        id="raj", email="raj@northwind.example", type=UserType.GUEST, organization="northwind"
    )
    decision = runtime.decide("merger-collaboration", raj, RequestOptions(), now=clock())
    assert [stage.resolved for stage in decision.stages] == [("sponsors",)]
    package_rules = package(runtime, "merger-collaboration")
    resolved = with_resolved_approvers(decision, raj, package_rules, session)
    assert [stage.resolved for stage in resolved.stages] == [("user:bob",)]
    assert resolved.stages[0].approvers == decision.stages[0].approvers
