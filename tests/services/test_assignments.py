"""Assignments: delivery, removal with reference counting, extension by the current rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions
from policyd.rules import load_texts
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.directory import DirectoryService
from policyd.services.errors import ConflictError, NotFoundError
from policyd.services.requests import RequestService
from policyd.store.models import Assignment, AuditRecord

READERS = "Group.ScopeA.Readers"
EXTRA = """apiVersion: policyd/v1
package:
  id: scope-a-extra
  displayName: Extra
  resources:
    - {connector: directory, resource: "group:Group.ScopeA.Readers"}
  lifetime: {duration: P1D}
  rules:
    - {id: all, then: {decision: auto_approve}}
"""


def user(name: str) -> Actor:
    return Actor(name, Role.USER)


@pytest.fixture
def grant(session, runtime, people, deliver, clock):
    """grant(name, package="scope-a-readers", justification=None) -> their request, filed
    and, once approved, delivered."""

    def make(name: str, package: str = "scope-a-readers", justification: str | None = None):
        request, _ = RequestService(session, runtime).create(
            user(name),
            package,
            name,
            None,
            RequestOptions(justification=justification),
            now=clock(),
        )
        deliver(clock())
        return request

    return make


@pytest.fixture
def assignments(session, runtime) -> AssignmentService:
    return AssignmentService(session, runtime)


def members(session) -> list[str]:
    return DirectoryService(session).members(READERS)[0]


def held(assignments: AssignmentService, name: str, **filters) -> list[Assignment]:
    return assignments.list(user(name), **filters)[0]


def test_an_auto_approved_request_is_delivered_into_the_group(session, assignments, grant):
    """Ada's eligible request becomes an active assignment and a directory membership."""
    request = grant("ada")
    (assignment,) = held(assignments, "ada")
    assert (assignment.state, assignment.request_id) == ("active", request.id)
    assert members(session) == ["ada"]


def test_the_holder_removes_access_and_the_membership_goes(
    session, assignments, grant, deliver, clock
):
    """Removing an assignment ends it now, audited, and takes the person out of the group; a
    second removal is a conflict naming `state`."""
    grant("ada")
    (assignment,) = held(assignments, "ada")
    removed = assignments.remove(user("ada"), assignment.id, now=clock())
    deliver(clock())
    session.refresh(removed)
    assert (removed.state, removed.removed_at) == ("removed", clock())
    assert members(session) == []
    actions = session.scalars(select(AuditRecord.action).where(AuditRecord.object_id == removed.id))
    assert "assignment.removal_requested" in list(actions)
    with pytest.raises(ConflictError) as err:
        assignments.remove(user("ada"), assignment.id, now=clock())
    assert err.value.field == "state"


def test_another_user_neither_sees_nor_removes_an_assignment(assignments, grant, clock):
    """Bob does not find Ada's assignment, so cannot remove it."""
    grant("ada")
    (assignment,) = held(assignments, "ada")
    assert held(assignments, "bob") == []
    with pytest.raises(NotFoundError):
        assignments.remove(user("bob"), assignment.id, now=clock())


def test_overlapping_packages_keep_a_shared_group(
    session, runtime, example_bundle, assignments, grant, deliver, clock
):
    """Ending one of two assignments that grant the same group leaves the membership."""
    runtime.activate(load_texts({"extra.yaml": EXTRA, **example_bundle.files}))
    grant("ada")
    grant("ada", "scope-a-extra")
    (first,) = held(assignments, "ada", package="scope-a-readers")
    assignments.remove(user("ada"), first.id, now=clock())
    deliver(clock())
    assert members(session) == ["ada"]


def test_extension_is_decided_by_the_current_rules(
    session, runtime, grant, assignments, deliver, clock
):
    """Extending asks the rules again: Sales Support opens a new request for approval; a
    just-in-time package whose rule forbids extension is a conflict."""
    requests = RequestService(session, runtime)
    request = grant("sam", "sales-support", justification="launch")
    for approver in ("max", "olga"):
        requests.decide_stage(user(approver), request.id, "approve", comment=None, now=clock())
    deliver(clock())
    (assignment,) = held(assignments, "sam")
    extension, _ = requests.extend(
        user("sam"), assignment.id, RequestOptions(justification="more"), now=clock()
    )
    assert (extension.extends_assignment_id, extension.state) == (
        assignment.id,
        "pending_approval",
    )
    grant("ada")
    (jit,) = held(assignments, "ada")
    with pytest.raises(ConflictError) as err:
        requests.extend(user("ada"), jit.id, RequestOptions(), now=clock())
    assert "does not allow extending" in err.value.message


def test_list_filters_by_state_and_expiry_with_the_total(assignments, grant):
    """Assignments filter by state and expiry; the page size limits, the total counts all."""
    grant("ada")
    found, total = assignments.list(
        Actor("root", Role.ADMIN),
        state="active",
        expiring_before=datetime(2026, 1, 6, tzinfo=UTC),
        limit=1,
    )
    assert ([a.subject_id for a in found], total) == (["ada"], 1)
    late = datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert assignments.list(Actor("root", Role.ADMIN), expiring_before=late) == ([], 0)
