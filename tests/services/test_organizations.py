"""Connected organisations: proposed by requests from unknown domains, configured by an admin,
sponsors as approvers, and removal ending the guests' access."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.domain import IllegalTransitionError, RequestOptions, Subject, UserType
from policyd.rules import PolicyRuntime, load_texts
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.errors import ConflictError, InvalidError, NotFoundError
from policyd.services.external_users import ExternalUsers, sweep_external_users
from policyd.services.leavers import LeaverService
from policyd.services.organization_removal import OrganizationRemoval
from policyd.services.requests import RequestService
from policyd.store.models import (
    AccessRequest,
    Assignment,
    AuditRecord,
    ConnectedOrganization,
    Job,
    Membership,
    OrganizationDomain,
)
from tests.conftest import rule_file
from tests.services.conftest import ROOT

GROUP = "Merger.Collaboration"


@pytest.fixture
def directory(session, people) -> DirectoryService:
    return DirectoryService(session)


@pytest.fixture
def file(session, runtime, clock):
    """file(subject, package="merger-collaboration") -> the request, filed by the subject."""

    def make(subject: str, package: str = "merger-collaboration") -> AccessRequest:
        service = RequestService(session, runtime)
        actor = Actor(subject, Role.USER)
        request, _ = service.create(actor, package, subject, None, RequestOptions(), now=clock())
        return request

    return make


def guest(directory: DirectoryService, user_id: str, email: str, clock, **more) -> None:
    directory.put_user(ROOT, user_id, {"email": email, "type": "guest", **more}, now=clock())
    directory.session.commit()


def audited(session, action: str) -> list[AuditRecord]:
    query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.id)
    return list(session.scalars(query))


def test_a_guest_of_an_unknown_domain_proposes_its_organization(session, directory, file, clock):
    """A guest whose domain no organisation owns files a request the rules allow: a proposed
    organisation named by the domain owns it now, audited with whom it was requested for."""
    guest(directory, "raj", "Raj@Northwind.example", clock)
    request = file("raj")
    assert request.state != "denied"
    org = directory.get_organization("northwind.example")
    assert (org.state, org.domains, org.display_name) == (
        "proposed",
        ["northwind.example"],
        "northwind.example",
    )
    assert (org.internal_sponsors, org.external_sponsors) == ([], [])
    assert session.get(OrganizationDomain, "northwind.example").organization_id == org.id
    [record] = audited(session, "directory.organization_proposed")
    assert (record.actor, record.after["requested_for"], record.after["state"]) == (
        "raj",
        "raj",
        "proposed",
    )


def test_a_second_guest_of_the_domain_finds_the_proposed_organization(
    session, directory, file, clock
):
    """One proposed organisation per domain: later requests from it propose nothing more."""
    guest(directory, "raj", "raj@northwind.example", clock)
    guest(directory, "rey", "rey@northwind.example", clock)
    file("raj")
    file("rey")
    assert session.scalars(select(ConnectedOrganization.id)).all() == ["northwind.example"]
    assert len(audited(session, "directory.organization_proposed")) == 1


def test_members_known_domains_and_denied_requests_propose_nothing(session, directory, file, clock):
    """A member of an unknown domain, a guest of a known domain or set on an organisation, and
    a guest whom the rules deny propose no organisation."""
    directory.put_user(ROOT, "mia", {"email": "mia@elsewhere.example"}, now=clock())
    org = {"display_name": "F", "domains": ["fabrikam.com"]}
    directory.put_organization(ROOT, "fabrikam", org, now=clock())
    guest(directory, "kai", "kai@set.example", clock, organization_id="fabrikam")
    guest(directory, "tom", "tom@gone.example", clock, employee_type="terminated")
    for subject in ("mia", "fab", "kai", "tom"):
        file(subject)
    assert session.scalars(select(ConnectedOrganization.id)).all() == ["fabrikam"]
    assert audited(session, "directory.organization_proposed") == []


def test_a_configured_organizations_sponsors_approve_its_guests(
    session, runtime, directory, file, clock
):
    """An admin configures the proposed organisation with an internal sponsor (olga) and an
    external one (kim, a guest of it); the next guest's request waits for both and the
    external sponsor's approval grants it."""
    guest(directory, "raj", "raj@northwind.example", clock)
    file("raj")
    guest(directory, "kim", "kim@northwind.example", clock)
    data = {"state": "configured", "internal_sponsors": ["olga"], "external_sponsors": ["kim"]}
    org = directory.put_organization(
        ROOT, "northwind.example", data, now=clock(), keep_missing=True
    )
    assert (org.state, org.domains) == ("configured", ["northwind.example"])
    session.commit()
    [record] = audited(session, "directory.organization_updated")
    assert (record.before["state"], record.after["state"]) == ("proposed", "configured")
    guest(directory, "rey", "rey@northwind.example", clock)
    request = file("rey")
    assert (request.state, request.stages[0]["approvers"]) == ("pending_approval", ["olga", "kim"])
    approved = RequestService(session, runtime).decide_stage(
        Actor("kim", Role.USER), request.id, "approve", comment=None, now=clock()
    )
    assert approved.state == "delivering"


def test_an_external_sponsor_never_approves_their_own_request(directory, file, clock):
    """A sponsor who requests is not among their own approvers: the other sponsor is."""
    directory.put_organization(
        ROOT,
        "northwind",
        {"display_name": "N", "domains": ["northwind.example"], "external_sponsors": ["kim"]},
        now=clock(),
    )
    directory.put_organization(
        ROOT, "northwind", {"internal_sponsors": ["olga"]}, now=clock(), keep_missing=True
    )
    guest(directory, "kim", "kim@northwind.example", clock)
    request = file("kim")
    assert request.stages[0]["approvers"] == ["olga"]


def test_a_sponsor_who_left_approves_nothing(session, runtime, directory, file, clock):
    """An external sponsor who was disabled is no approver of the guests' next requests; the
    internal one still is."""
    org = {
        "display_name": "N",
        "domains": ["northwind.example"],
        "internal_sponsors": ["olga"],
        "external_sponsors": ["kim"],
    }
    directory.put_organization(ROOT, "northwind", org, now=clock())
    guest(directory, "kim", "kim@northwind.example", clock)
    LeaverService(session, runtime).disable_user(ROOT, "kim", now=clock())
    guest(directory, "raj", "raj@northwind.example", clock)
    assert file("raj").stages[0]["approvers"] == ["olga"]


def test_a_removed_organization_cannot_be_configured_again(directory, clock):
    """The states move only as the table allows: removed is the end, and PUT sets only
    proposed or configured."""
    directory.put_organization(ROOT, "o", {"display_name": "O", "state": "proposed"}, now=clock())
    moved = directory.put_organization(
        ROOT, "o", {"state": "configured"}, now=clock(), keep_missing=True
    )
    assert moved.state == "configured"
    for bad in ({"state": "gone"}, {"state": "removed"}):
        with pytest.raises(InvalidError) as err:
            directory.put_organization(ROOT, "o", bad, now=clock(), keep_missing=True)
        assert err.value.field == "state"
    moved.state = "removed"
    with pytest.raises(IllegalTransitionError):
        directory.put_organization(
            ROOT, "o", {"state": "configured"}, now=clock(), keep_missing=True
        )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"domains": ["x" * 254]}, "domains"),
        ({"internal_sponsors": [""]}, "internal_sponsors"),
        ({"external_sponsors": ["x" * 201]}, "external_sponsors"),
    ],
)
def test_bad_values_are_refused_naming_the_field(session, directory, clock, data, field):
    """Whoever calls (API, import, CLI): a domain past 253 characters or a sponsor that is no
    id is refused naming the field, and nothing is stored."""
    with pytest.raises(InvalidError) as err:
        directory.put_organization(ROOT, "o", {"display_name": "O", **data}, now=clock())
    assert err.value.field == field
    assert session.get(ConnectedOrganization, "o") is None


def test_listing_by_state_shows_what_requests_proposed(directory, file, clock):
    """`state=proposed` lists only the proposed organisations."""
    directory.put_organization(ROOT, "contoso", {"display_name": "C"}, now=clock())
    guest(directory, "raj", "raj@northwind.example", clock)
    file("raj")
    found, total = directory.list_organizations(state="proposed")
    assert ([o.id for o in found], total) == (["northwind.example"], 1)
    assert directory.list_organizations()[1] == 2


def fabrikam_with_access(session, directory, file, deliver, clock) -> None:
    """Fabrikam (fabrikam.com) configured; its guest fab and a member mia of the same domain
    hold Merger collaboration (auto-approved), delivered to the group."""
    directory.put_organization(
        ROOT, "fabrikam", {"display_name": "Fabrikam", "domains": ["fabrikam.com"]}, now=clock()
    )
    directory.put_user(ROOT, "mia", {"email": "mia@fabrikam.com"}, now=clock())
    session.commit()
    for subject in ("fab", "mia"):
        assert file(subject).state == "delivering"
    deliver(clock())


def members(session) -> list[str]:
    query = select(Membership.user_id).where(Membership.group_id == GROUP)
    return sorted(session.scalars(query.order_by(Membership.user_id)))


def test_removing_an_organization_ends_its_guests_access_through_the_connector(
    session, directory, file, deliver, clock
):
    """Removal ends the guest's assignment (revoked through the directory connector by the
    outbox) and not the member's of the same domain; the organisation and its domains are
    gone and the removal is audited with what it ended."""
    fabrikam_with_access(session, directory, file, deliver, clock)
    assert members(session) == ["fab", "mia"]
    clock.advance(hours=1)
    ended = OrganizationRemoval(session).remove_organization(ROOT, "fabrikam", now=clock())
    assert ended == {
        "guests": 1,
        "assignments_ended": 1,
        **{f"requests_{k}": 0 for k in ("canceled", "reassigned", "escalated", "denied")},
    }
    revokes = session.scalars(select(Job).where(Job.kind == "revoke")).all()
    assert [(j.subject_id, j.connector, j.resource) for j in revokes] == [
        ("fab", "directory", f"group:{GROUP}")
    ]
    deliver(clock())
    assert members(session) == ["mia"]
    states = dict(session.execute(select(Assignment.subject_id, Assignment.state)).all())
    assert states == {"fab": "removed", "mia": "active"}
    with pytest.raises(NotFoundError):
        directory.get_organization("fabrikam")
    assert session.get(OrganizationDomain, "fabrikam.com") is None
    [record] = audited(session, "directory.organization_removed")
    assert (record.before["state"], record.after["state"]) == ("configured", "removed")
    assert record.after["guests"] == ["fab"]


def shared(package_id: str) -> str:
    return rule_file(
        f"""
        apiVersion: policyd/v1
        package:
          id: {package_id}
          displayName: {package_id}
          lifetime: {{duration: P30D}}
          resources:
            - {{connector: directory, resource: "group:Shared", role: member}}
          rules:
            - id: anyone
              then: {{decision: auto_approve}}
        """
    )


def test_removal_revokes_a_role_two_ending_assignments_share_once(
    session, directory, deliver, clock
):
    """Reference counting: the guest holds two packages granting the same group; both end
    with the organisation and the group is revoked once."""
    runtime = PolicyRuntime(load_texts({"a.yaml": shared("shared-a"), "b.yaml": shared("sb")}))
    directory.put_organization(
        ROOT, "fabrikam", {"display_name": "F", "domains": ["fabrikam.com"]}, now=clock()
    )
    session.commit()
    service = RequestService(session, runtime)
    for package in ("shared-a", "sb"):
        service.create(SYSTEM, package, "fab", None, RequestOptions(), now=clock())
    deliver(clock())
    held = select(Membership.user_id).where(Membership.group_id == "Shared")
    assert session.scalars(held).all() == ["fab"]
    OrganizationRemoval(session, runtime).remove_organization(ROOT, "fabrikam", now=clock())
    revokes = session.execute(select(Job.resource).where(Job.kind == "revoke")).all()
    assert revokes == [("group:Shared",)]
    deliver(clock())
    states = session.scalars(select(Assignment.state).where(Assignment.subject_id == "fab"))
    assert list(states) == ["removed", "removed"]
    assert session.scalars(held).all() == []
    runtime.close()


def test_a_removed_organizations_guests_follow_the_external_users_setting(
    session, directory, file, deliver, clock
):
    """After the removal, the clean-up disables the guest where they were granted access and
    deletes them after the delay, as for any guest whose last access ended."""
    fabrikam_with_access(session, directory, file, deliver, clock)
    OrganizationRemoval(session).remove_organization(ROOT, "fabrikam", now=clock())
    deliver(clock())
    mode, delay = ExternalUsers.DISABLE_THEN_DELETE, timedelta(days=30)
    swept = sweep_external_users(session, now=clock(), mode=mode, delete_after=delay)
    assert swept == {"disabled": 1, "deleted": 0}
    clock.advance(days=30)
    swept = sweep_external_users(session, now=clock(), mode=mode, delete_after=delay)
    assert swept == {"disabled": 0, "deleted": 1}
    kinds = session.execute(
        select(Job.kind, Job.subject_id).where(Job.kind.in_(["disable_user", "delete_user"]))
    ).all()
    assert sorted(kinds) == [("delete_user", "fab"), ("disable_user", "fab")]


def test_removal_cancels_the_guests_open_requests(session, directory, file, clock):
    """A proposed organisation's guest waiting for approval: removal cancels the request."""
    guest(directory, "raj", "raj@northwind.example", clock)
    request = file("raj")
    directory.put_organization(
        ROOT,
        "northwind.example",
        {"external_sponsors": ["olga"]},
        now=clock(),
        keep_missing=True,
    )
    session.commit()
    assert (request.state, request.stages[0]["approvers"]) == (
        "pending_approval",
        ["integration-lead"],  # nobody sponsors a proposed organisation: escalated to owners
    )
    OrganizationRemoval(session).remove_organization(ROOT, "northwind.example", now=clock())
    session.refresh(request)
    assert request.state == "canceled"


def test_removing_an_unknown_organization_is_not_found(session, people, clock):
    """No such organisation: NotFoundError naming `id`, nothing changed."""
    with pytest.raises(NotFoundError) as err:
        OrganizationRemoval(session).remove_organization(ROOT, "nope", now=clock())
    assert err.value.field == "id"


@pytest.fixture
def guests(store, example_bundle, clock):
    """Four guests of northwind.example, committed, and the example policies (for filings
    in sessions of their own, on threads)."""
    with store.session() as session:
        directory = DirectoryService(session)
        for n in range(4):
            data = {"email": f"g{n}@northwind.example", "type": "guest"}
            directory.put_user(ROOT, f"g{n}", data, now=clock())
        session.commit()
    runtime = PolicyRuntime(example_bundle)
    yield runtime
    runtime.close()


def test_concurrent_requests_from_one_unknown_domain_propose_one_organization(store, guests, clock):
    """Four guests of the same unknown domain file at the same moment, each in a transaction
    of its own: every request is filed and exactly one organisation is proposed, once
    audited."""
    barrier = threading.Barrier(4)
    states: dict[str, str] = {}

    def file(subject: str) -> None:
        with store.session() as session:
            service = RequestService(session, guests)
            barrier.wait()
            request, _ = service.create(
                Actor(subject, Role.USER),
                "merger-collaboration",
                subject,
                None,
                RequestOptions(),
                now=clock(),
            )
            states[subject] = request.state

    threads = [threading.Thread(target=file, args=(f"g{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(states) == ["g0", "g1", "g2", "g3"]
    with store.session() as session:
        assert session.scalars(select(ConnectedOrganization.id)).all() == ["northwind.example"]
        assert len(audited(session, "directory.organization_proposed")) == 1


def test_a_second_proposal_waits_for_the_first_and_then_finds_it(store, guests, clock):
    """The first transaction to propose holds the domain until it commits; the second waits,
    then finds the organisation proposed and proposes nothing (PostgreSQL: the key's lock;
    SQLite: the database's write lock)."""
    first_done, events = threading.Event(), []
    raj = Subject("g0", email="g0@northwind.example", type=UserType.GUEST)
    rey = Subject("g1", email="g1@northwind.example", type=UserType.GUEST)

    def second() -> None:
        first_done.wait()
        with store.session() as session:
            found = DirectoryService(session).propose_organization(ROOT, rey, now=clock())
            events.append(("second", found))
            session.commit()

    with store.session() as session:
        proposed = DirectoryService(session).propose_organization(ROOT, raj, now=clock())
        waiting = threading.Thread(target=second)
        waiting.start()
        first_done.set()
        time.sleep(0.3)
        events.append(("first commits", proposed.id))
        session.commit()
    waiting.join()
    assert events == [("first commits", "northwind.example"), ("second", None)]


def test_an_admin_claiming_a_domain_being_proposed_gets_a_conflict(store, guests, clock):
    """A request proposes northwind.example while an admin gives the domain to another
    organisation: the admin's change waits for the request's commit and is refused naming
    `domains` (not a database error)."""
    raj = Subject("g0", email="g0@northwind.example", type=UserType.GUEST)
    started, outcome = threading.Event(), []

    def claim() -> None:
        started.wait()
        with store.session() as session:
            data = {"display_name": "NW", "domains": ["northwind.example"]}
            try:
                DirectoryService(session).put_organization(ROOT, "nw", data, now=clock())
                session.commit()
                outcome.append("claimed")
            except ConflictError as err:
                outcome.append(err.field)

    with store.session() as session:
        DirectoryService(session).propose_organization(ROOT, raj, now=clock())
        admin = threading.Thread(target=claim)
        admin.start()
        started.set()
        time.sleep(0.3)
        session.commit()
    admin.join()
    assert outcome == ["domains"]
    with store.session() as session:
        owner = session.get(OrganizationDomain, "northwind.example").organization_id
        assert owner == "northwind.example"
        assert session.get(ConnectedOrganization, "nw") is None
