"""Delegated administration: catalog owners and package managers administer their packages'
assignments and requests, and nothing outside them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, load_texts
from policyd.rules.packed import pack_bundle, unpack_bundle
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.delegation import DelegationService
from policyd.services.direct_assignments import DIRECT_RULE, DirectAssignmentService
from policyd.services.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from policyd.services.requests import RequestService
from policyd.store.models import AuditRecord
from tests.conftest import rule_file

# max owns engineering (scope-a-readers); Sales.Ops (olga) owns sales; bob manages tools.
CATALOGS = """
apiVersion: policyd/v1
catalogs:
  - {id: engineering, displayName: Engineering, owners: ["user:max"]}
  - {id: finance, displayName: Finance}
  - {id: integration, displayName: Integration}
  - {id: sales, displayName: Sales, owners: ["group:Sales.Ops"]}
"""
TOOLS = """
apiVersion: policyd/v1
package:
  id: tools
  displayName: Tools
  catalog: sales
  managers: ["user:bob"]
  resources:
    - {connector: directory, resource: "group:Tools"}
  lifetime: {duration: P1D}
  rules:
    - {id: all, then: {decision: auto_approve}}
"""


def user(name: str) -> Actor:
    return Actor(name, Role.USER)


@pytest.fixture
def runtime(example_bundle):
    """The example policies with the catalogs above and the tools package, active."""
    files = {**example_bundle.files, "catalogs.yaml": rule_file(CATALOGS)}
    policies = PolicyRuntime(load_texts({**files, "tools.yaml": rule_file(TOOLS)}))
    yield policies
    policies.close()


@pytest.fixture
def granted(session, runtime, people, deliver, clock):
    """ada holds scope-a-readers and tools (both auto-approved), delivered."""
    requests = RequestService(session, runtime)
    for package in ("scope-a-readers", "tools"):
        requests.create(user("ada"), package, "ada", None, RequestOptions(), now=clock())
    deliver(clock())
    return AssignmentService(session, runtime)


def packages_seen(assignments: AssignmentService, actor: Actor, **filters) -> list[str]:
    return sorted(a.package for a in assignments.list(actor, **filters)[0])


def test_owners_and_managers_administer_their_packages_and_say_why(session, runtime, people):
    """Catalog ownership (also through a group) and package management each give packages,
    with the reason; a person with neither administers nothing."""
    delegation = DelegationService(session, runtime)
    assert delegation.scope(user("max")).packages == {
        "scope-a-readers": "owner of catalog 'engineering'"
    }
    assert delegation.scope(user("olga")).packages == {
        "sales-support": "owner of catalog 'sales'",
        "tools": "owner of catalog 'sales'",
    }
    assert delegation.scope(user("bob")).packages == {"tools": "manager of package 'tools'"}
    assert delegation.scope(user("carol")).package_ids == []


def test_admins_administer_everything_and_apps_and_auditors_nothing(session, runtime):
    """Delegation is for people; an admin's reach is whole, an app's or auditor's unchanged."""
    delegation = DelegationService(session, runtime)
    assert delegation.scope(Actor("root", Role.ADMIN)).covers("anything")
    for role in (Role.APP, Role.AUDITOR):
        assert delegation.scope(Actor("olga", role)).package_ids == []


def test_a_catalog_owner_lists_their_catalogs_assignments_only(granted):
    """max sees ada's Scope A access but not her tools; olga the reverse; carol neither."""
    assert packages_seen(granted, user("max")) == ["scope-a-readers"]
    assert packages_seen(granted, user("olga")) == ["tools"]
    assert packages_seen(granted, user("bob")) == ["tools"]
    assert packages_seen(granted, user("carol")) == []


def test_filtering_by_an_owned_catalog_lists_it(granted):
    """?catalog= narrows an owner's list, and any admin's, to that catalog."""
    assert packages_seen(granted, user("olga"), catalog="sales") == ["tools"]
    root = Actor("root", Role.ADMIN)
    assert packages_seen(granted, root, catalog="engineering") == ["scope-a-readers"]


def test_filtering_by_a_catalog_one_does_not_own_is_refused(granted):
    """A person who does not own the catalog gets 403 naming `catalog`, even a package
    manager in it; an undeclared catalog is 422 naming `catalog`."""
    for name in ("olga", "bob"):
        with pytest.raises(ForbiddenError) as err:
            granted.list(user(name), catalog="engineering")
        assert (err.value.field, err.value.message) == (
            "catalog",
            f"{name!r} does not own catalog 'engineering'",
        )
    with pytest.raises(InvalidError) as invalid:
        granted.list(Actor("root", Role.ADMIN), catalog="nope")
    assert invalid.value.field == "catalog"


def test_a_catalog_owner_removes_an_assignment_in_their_catalog_audited(session, granted, clock):
    """olga ends ada's tools access; the audit names olga, the time and the rule version."""
    (tools,) = granted.list(user("olga"))[0]
    removed = granted.remove(user("olga"), tools.id, now=clock())
    assert removed.state in ("expiring", "removed")
    record = session.scalars(
        select(AuditRecord).where(
            AuditRecord.object_id == tools.id,
            AuditRecord.action == "assignment.removal_requested",
        )
    ).one()
    assert (record.actor, record.at, record.version) == ("olga", clock(), tools.version)


def test_a_catalog_owner_cannot_remove_outside_their_catalogs(granted, clock):
    """olga is refused ada's Scope A access with 403 naming why; carol, who administers
    nothing, still finds nothing (404)."""
    (scope_a,) = granted.list(user("max"))[0]
    with pytest.raises(ForbiddenError) as err:
        granted.remove(user("olga"), scope_a.id, now=clock())
    assert err.value.field == "id"
    assert "administers only the packages of the catalogs they own" in err.value.message
    with pytest.raises(NotFoundError):
        granted.remove(user("carol"), scope_a.id, now=clock())


def test_a_catalog_owner_sees_their_packages_requests(session, runtime, granted):
    """Requests for a package one administers are listed and shown; others are not."""
    requests = RequestService(session, runtime)
    listed = requests.list(user("olga"))[0]
    assert [r.package for r in listed] == ["tools"]
    assert requests.get(user("olga"), listed[0].id).subject_id == "ada"
    (scope_a,) = requests.list(user("max"))[0]
    with pytest.raises(NotFoundError):
        requests.get(user("olga"), scope_a.id)


def test_delegation_follows_the_active_version(session, runtime, example_bundle, granted):
    """Publishing catalogs without max as owner takes his reach away at once."""
    runtime.activate(example_bundle)
    assert packages_seen(granted, user("max")) == []


def test_a_catalog_owner_assigns_directly_for_a_lifetime_audited(session, runtime, people, clock):
    """olga grants sam tools for a day: an assignment ending then, whose request names the
    direct-assignment rule, audited as olga's with the version."""
    service = DirectAssignmentService(session, runtime)
    assignment = service.assign(user("olga"), "tools", "sam", timedelta(hours=12), now=clock())
    assert (assignment.subject_id, assignment.expires_at) == ("sam", clock() + timedelta(hours=12))
    assert (assignment.rule, assignment.version) == (DIRECT_RULE, runtime.active.version)
    actions = session.scalars(
        select(AuditRecord.action).where(AuditRecord.actor == "olga").order_by(AuditRecord.id)
    ).all()
    assert actions[:2] == ["request.assigned_directly", "assignment.created"]


def test_a_direct_assignment_longer_than_the_policy_allows_is_refused(
    session, runtime, people, clock
):
    """tools grants a day at most: two days is 422 naming `duration`."""
    service = DirectAssignmentService(session, runtime)
    with pytest.raises(InvalidError) as err:
        service.assign(user("olga"), "tools", "sam", timedelta(days=2), now=clock())
    assert err.value.field == "duration"


def test_a_direct_assignment_outside_ones_catalogs_is_refused(session, runtime, people, clock):
    """olga may not assign scope-a-readers (engineering): 403 naming `package` and why."""
    service = DirectAssignmentService(session, runtime)
    with pytest.raises(ForbiddenError) as err:
        service.assign(user("olga"), "scope-a-readers", "sam", timedelta(hours=1), now=clock())
    assert err.value.field == "package"
    assert "nor an owner of its catalog 'engineering'" in err.value.message


def test_a_direct_assignment_of_held_access_is_a_conflict(session, runtime, granted, clock):
    """ada already holds tools: assigning it again is 409 naming `package`."""
    service = DirectAssignmentService(session, runtime)
    with pytest.raises(ConflictError) as err:
        service.assign(user("bob"), "tools", "ada", timedelta(hours=1), now=clock())
    assert err.value.field == "package"


def test_a_direct_assignment_to_an_unknown_user_is_not_found(session, runtime, people, clock):
    """A subject the directory does not know is 404 naming `subject`."""
    service = DirectAssignmentService(session, runtime)
    with pytest.raises(NotFoundError) as err:
        service.assign(user("bob"), "tools", "nobody", timedelta(hours=1), now=clock())
    assert err.value.field == "subject"


def test_seeing_an_assignment_does_not_let_an_owner_extend_or_cancel_for_its_holder(
    session, runtime, granted, clock
):
    """Delegation covers listing, direct assignment and removal: olga may not extend ada's
    tools access, nor cancel a request she did not file."""
    requests = RequestService(session, runtime)
    (tools,) = granted.list(user("olga"))[0]
    with pytest.raises(ForbiddenError):
        requests.extend(user("olga"), tools.id, RequestOptions(), now=clock())
    (filed,) = requests.list(user("olga"))[0]
    with pytest.raises(ForbiddenError):
        requests.cancel(user("olga"), filed.id, now=clock())


def test_delegation_on_a_packed_version_decodes_no_package(session, runtime, people):
    """Who administers what comes from the bundle's indexes: a packed version answers
    without decoding its packages."""
    packed = unpack_bundle(pack_bundle(runtime.active.bundle))
    runtime.activate(packed)
    scope = DelegationService(session, runtime).scope(user("olga"))
    assert scope.package_ids == ["sales-support", "tools"]
    assert runtime.active.bundle.packages.decoded == 0


LOCKED = """
apiVersion: policyd/v1
package:
  id: locked
  displayName: Locked
  managers: ["user:bob"]
  incompatibleGroups: [Sales.Ops]
  lifetime: {duration: P1D}
  rules:
    - {id: all, then: {decision: auto_approve}}
"""


def test_separation_of_duties_refuses_a_direct_assignment(
    session, runtime, example_bundle, people, clock
):
    """bob may assign `locked`, but not to olga, whose group is incompatible with it: 409
    naming `package` with the rule's reason."""
    files = {**runtime.active.bundle.files, "locked.yaml": rule_file(LOCKED)}
    runtime.activate(load_texts(files))
    service = DirectAssignmentService(session, runtime)
    with pytest.raises(ConflictError) as err:
        service.assign(user("bob"), "locked", "olga", timedelta(hours=1), now=clock())
    assert err.value.field == "package" and "Sales.Ops" in err.value.message
    assert service.assign(user("bob"), "locked", "sam", timedelta(hours=1), now=clock())
