"""Direct assignment: an administrator grants a package for a lifetime, without approval."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions
from policyd.rules import load_texts
from policyd.services.actor import Actor, Role
from policyd.services.direct_assignments import (
    DIRECT_RULE,
    DirectAssignmentService,
    longest_lifetime,
)
from policyd.services.directory import DirectoryService
from policyd.services.errors import ConflictError, InvalidError, NotFoundError
from policyd.services.leavers import LeaverService
from policyd.services.requests import RequestService
from policyd.store.models import AccessRequest, AuditRecord
from tests.conftest import rule_file
from tests.services.conftest import ROOT

FOREVER = """
apiVersion: policyd/v1
package:
  id: forever
  displayName: Forever
  lifetime: {permanent: true}
  rules:
    - {id: all, then: {decision: auto_approve}}
"""


@pytest.fixture
def direct(session, runtime, people) -> DirectAssignmentService:
    return DirectAssignmentService(session, runtime)


def test_an_admin_assigns_directly_and_the_worker_delivers_it(session, direct, deliver, clock):
    """root gives bob Scope A for four hours: an approved request naming the direct rule,
    audited with the version; delivered, bob is in the group until then."""
    assignment = direct.assign(
        ROOT, "scope-a-readers", "bob", timedelta(hours=4), justification="incident", now=clock()
    )
    request = session.get(AccessRequest, assignment.request_id)
    assert (request.rule, request.principal, request.justification) == (
        DIRECT_RULE,
        "root",
        "incident",
    )
    assert assignment.expires_at == clock() + timedelta(hours=4)
    record = session.scalars(
        select(AuditRecord).where(AuditRecord.action == "request.assigned_directly")
    ).one()
    assert (record.object_id, record.version) == (request.id, request.version)
    deliver(clock())
    session.refresh(assignment)
    assert (assignment.state, request.state) == ("active", "delivered")
    assert "bob" in DirectoryService(session).members("Group.ScopeA.Readers")[0]


def test_a_duration_past_the_package_s_longest_lifetime_is_invalid(direct, clock):
    """Scope A lasts eight hours at most: nine is 422 naming `duration`."""
    with pytest.raises(InvalidError) as err:
        direct.assign(ROOT, "scope-a-readers", "bob", timedelta(hours=9), now=clock())
    assert err.value.field == "duration"


def test_a_package_without_a_duration_cannot_be_assigned_directly(direct, clock):
    """quarter-end-close ends with the quarter (a cron): 422 naming `package`."""
    with pytest.raises(InvalidError) as err:
        direct.assign(ROOT, "quarter-end-close", "bob", timedelta(days=1), now=clock())
    assert err.value.field == "package"


def test_an_unknown_package_is_not_found(direct, clock):
    with pytest.raises(NotFoundError) as err:
        direct.assign(ROOT, "nothing", "bob", timedelta(hours=1), now=clock())
    assert err.value.field == "package"


def test_a_disabled_user_is_not_assigned_anything(session, direct, clock):
    """bob has left: 409 naming `subject`."""
    LeaverService(session).disable_user(ROOT, "bob", now=clock())
    with pytest.raises(ConflictError) as err:
        direct.assign(ROOT, "scope-a-readers", "bob", timedelta(hours=1), now=clock())
    assert err.value.field == "subject"


def test_someone_with_an_open_request_is_not_assigned_the_same(session, runtime, direct, clock):
    """bob waits for approval of Scope A: assigning it to him is 409 naming `package`."""
    RequestService(session, runtime).create(
        Actor("bob", Role.USER), "scope-a-readers", "bob", None, RequestOptions(), now=clock()
    )
    with pytest.raises(ConflictError) as err:
        direct.assign(ROOT, "scope-a-readers", "bob", timedelta(hours=1), now=clock())
    assert err.value.field == "package" and "open request" in err.value.message


def test_the_longest_lifetime_is_the_package_s_largest_bound(runtime, example_bundle):
    """Scope A: eight hours; sales-support: its rule's 90-day maximum; a permanent package
    has no bound."""
    packages = runtime.active.bundle.packages
    assert longest_lifetime(packages["scope-a-readers"]) == timedelta(hours=8)
    assert longest_lifetime(packages["sales-support"]) == timedelta(days=90)
    forever = load_texts({"forever.yaml": rule_file(FOREVER)}).packages["forever"]
    assert longest_lifetime(forever) is None


def test_a_permanent_package_is_assigned_for_any_duration(
    session, runtime, example_bundle, people, clock
):
    """No bound: ten years is accepted."""
    runtime.activate(load_texts({**example_bundle.files, "forever.yaml": rule_file(FOREVER)}))
    direct = DirectAssignmentService(session, runtime)
    assignment = direct.assign(ROOT, "forever", "bob", timedelta(days=3650), now=clock())
    assert assignment.expires_at == clock() + timedelta(days=3650)
