"""Filing a request: who may file, leavers and duplicates refused, idempotency, the decision
acted on, and the request's audit record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions, ResolvedLifetime
from policyd.services.actor import Actor, Role
from policyd.services.errors import ConflictError, ForbiddenError, InvalidError
from policyd.services.leavers import LeaverService
from policyd.services.request_filing import lifetime_terms
from policyd.services.requests import RequestService
from policyd.store.models import AuditRecord, DecisionRecord, StageApprover
from tests.services.conftest import ROOT


def user(name: str) -> Actor:
    return Actor(name, Role.USER)


@pytest.fixture
def file(session, runtime, people, clock):
    """file(by, package, subject=None, justification=None, key=None, extends=None)."""
    requests = RequestService(session, runtime)

    def make(by, package, subject=None, justification=None, key=None, extends=None):
        actor = by if isinstance(by, Actor) else user(by)
        return requests.create(
            actor,
            package,
            subject or actor.principal,
            None,
            RequestOptions(justification=justification),
            now=clock(),
            idempotency_key=key,
            extends=extends,
        )

    return make


def test_an_eligible_request_is_granted_at_once_and_audited(session, file, clock):
    """ada's Scope A request is auto-approved: delivering, with its decision logged and its
    creation audited with the rule and version."""
    request, created = file("ada", "scope-a-readers")
    assert (created, request.state, request.rule) == (True, "delivering", "eligible-members")
    assert session.get(DecisionRecord, request.decision_id).subject_id == "ada"
    assert request.expires_at == clock() + timedelta(hours=8)
    record = session.scalars(
        select(AuditRecord).where(
            AuditRecord.object_id == request.id, AuditRecord.action == "request.created"
        )
    ).one()
    assert (record.actor, record.version) == ("ada", request.version)
    assert record.after["rule"] == "eligible-members"


def test_a_request_needing_approval_enters_its_first_stage(session, file):
    """bob's Scope A request waits in stage 1 for the approvers group, without bob."""
    request, _ = file("bob", "scope-a-readers")
    assert (request.state, request.stage) == ("pending_approval", 1)
    approvers = session.scalars(
        select(StageApprover.user_id).where(StageApprover.request_id == request.id)
    )
    assert sorted(approvers) == ["ada", "carol"]
    assert request.lifetime["span_seconds"] == 8 * 3600


def test_a_request_the_rules_deny_ends_denied(file):
    """fab is a guest: sales-support denies guests, with the rule's reason."""
    request, _ = file("fab", "sales-support")
    assert (request.state, request.rule) == ("denied", "guests-cannot-request")


def test_a_user_files_only_for_themselves(file):
    """A user asking for someone else is 403 naming `subject.id`; an app may."""
    with pytest.raises(ForbiddenError) as err:
        file("bob", "scope-a-readers", subject="ada")
    assert err.value.field == "subject.id"
    request, _ = file(Actor("portal", Role.APP), "scope-a-readers", subject="ada")
    assert (request.subject_id, request.principal) == ("ada", "portal")


def test_a_disabled_user_files_nothing(session, file, clock):
    """bob has left (disabled): his request is 409 naming `subject.id`."""
    LeaverService(session).disable_user(ROOT, "bob", now=clock())
    with pytest.raises(ConflictError) as err:
        file("bob", "scope-a-readers")
    assert err.value.field == "subject.id"


def test_an_open_request_or_held_access_refuses_a_second(file):
    """bob's pending request, and ada's access, each refuse another: 409 naming `package`."""
    file("bob", "scope-a-readers")
    with pytest.raises(ConflictError) as pending:
        file("bob", "scope-a-readers")
    assert pending.value.field == "package" and "still open" in pending.value.message
    file("ada", "scope-a-readers")
    with pytest.raises(ConflictError) as held:
        file("ada", "scope-a-readers")
    assert held.value.field == "package"


def test_a_repeated_idempotency_key_returns_the_first_request(file, clock):
    """The same key within 24 hours gives back the first request, created=False."""
    first, created = file("fab", "sales-support", key="k1")
    clock.advance(hours=23)
    again, created_again = file("fab", "sales-support", key="k1")
    assert (created, created_again, again.id) == (True, False, first.id)


def test_an_idempotency_key_older_than_a_day_files_anew(file, clock):
    """After 24 hours the key is given up: a new request, and the old one loses the key."""
    first, _ = file("fab", "sales-support", key="k1")
    clock.advance(hours=25)
    second, created = file("fab", "sales-support", key="k1")
    assert (created, second.id != first.id) == (True, True)
    assert (first.idempotency_key, second.idempotency_key) == (None, "k1")


def test_a_rule_asking_for_a_justification_refuses_a_request_without(file):
    """sales-support asks sam for a justification: 422 naming `justification`."""
    with pytest.raises(InvalidError) as err:
        file("sam", "sales-support")
    assert err.value.field == "justification"
    request, _ = file("sam", "sales-support", justification="covering the desk")
    assert request.state == "pending_approval"


def test_extending_where_the_rule_does_not_allow_it_is_a_conflict(file):
    """Scope A's lifetime is not extendable: an extension is 409 naming `assignment`."""
    with pytest.raises(ConflictError) as err:
        file("ada", "scope-a-readers", extends="some-assignment")
    assert err.value.field == "assignment"


def test_lifetime_terms_keep_the_explanation_and_the_span():
    """What a request stores of a decision's lifetime; none without one."""
    assert lifetime_terms(None) is None
    at = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
    lifetime = ResolvedLifetime(
        expires_at=at, explanation="8 hours", clamped=False, span=timedelta(hours=8)
    )
    terms = lifetime_terms(lifetime)
    assert terms["span_seconds"] == 8 * 3600
    assert terms["expires_at_if_granted_at_filing"] == at.isoformat()
    assert terms["not_after"] is None
