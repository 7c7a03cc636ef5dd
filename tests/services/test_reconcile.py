"""Reconciliation against the directory connector: drift reported per resource, mended with
grants and revokes, never re-granting access that ended."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from policyd.connectors.config import Connectors, load_instances
from policyd.domain import AssignmentState, JobState, RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.assignment_removal import REVOKE_ATTEMPTS
from policyd.services.assignments import AssignmentService
from policyd.services.directory import DirectoryService
from policyd.services.jobs import JobService
from policyd.services.memberships import DirectoryMemberships
from policyd.services.reconcile import reconcile, reconcile_pages
from policyd.services.requests import RequestService
from policyd.store.models import Assignment, Job
from tests.services.conftest import ROOT

GROUP = "Group.ScopeA.Readers"
RESOURCE = f"group:{GROUP}"


@pytest.fixture
def connectors(session) -> Connectors:
    """The configured connectors (the directory), in the test's transaction."""

    def sessions() -> Session:
        return Session(
            bind=session.connection(),
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
        )

    made = Connectors(load_instances(None), DirectoryMemberships(sessions))
    yield made
    made.close()


@pytest.fixture
def granted(session, runtime, people, deliver, clock) -> Assignment:
    """ada holds Scope A, delivered."""
    RequestService(session, runtime).create(
        Actor("ada", Role.USER), "scope-a-readers", "ada", None, RequestOptions(), now=clock()
    )
    deliver(clock())
    return session.scalars(select(Assignment)).one()


def drift(session, connectors, clock, **options):
    """(missing, unauthorised) of Scope A's group."""
    report = reconcile(session, connectors, now=clock(), only="directory", **options)
    (found,) = [d for d in report if d.resource == RESOURCE]
    assert found.error is None
    return found.missing, sorted(found.unauthorised)


def test_delivered_access_is_no_drift(session, connectors, granted, clock):
    assert drift(session, connectors, clock) == ({}, [])


def test_hand_made_changes_are_missing_and_unauthorised_then_mended(
    session, connectors, granted, deliver, clock
):
    """ada taken out by hand is missing (with her assignment), bob put in is unauthorised;
    fixing queues her grant and his revoke, retried until done; delivered, no drift."""
    directory = DirectoryService(session)
    directory.remove_member(ROOT, GROUP, "ada", now=clock())
    directory.add_member(ROOT, GROUP, "bob", now=clock())
    session.commit()
    assert drift(session, connectors, clock) == ({"ada": granted.id}, ["bob"])
    assert drift(session, connectors, clock, fix=True) == ({"ada": granted.id}, ["bob"])
    queued = session.scalars(select(Job).where(Job.state == "queued", Job.kind != "notify"))
    jobs = {(job.kind, job.subject_id): job for job in queued}
    assert jobs[("grant", "ada")].assignment_id == granted.id
    assert jobs[("revoke", "bob")].max_attempts == REVOKE_ATTEMPTS
    deliver(clock())
    assert drift(session, connectors, clock) == ({}, [])
    assert directory.members(GROUP)[0] == ["ada"]


def test_ended_access_is_never_granted_again(session, runtime, connectors, granted, deliver, clock):
    """ada gave Scope A up; someone puts her back by hand: she is unauthorised, not
    missing, and fixing takes her out again."""
    AssignmentService(session, runtime).remove(Actor("ada", Role.USER), granted.id, now=clock())
    deliver(clock())
    DirectoryService(session).add_member(ROOT, GROUP, "ada", now=clock())
    session.commit()
    assert drift(session, connectors, clock, fix=True) == ({}, ["ada"])
    deliver(clock())
    assert DirectoryService(session).members(GROUP)[0] == []


def test_a_grant_still_on_its_way_is_not_missing(session, runtime, people, connectors, clock):
    """ada's grant is queued, not run: she is not in the group, and not missing either."""
    RequestService(session, runtime).create(
        Actor("ada", Role.USER), "scope-a-readers", "ada", None, RequestOptions(), now=clock()
    )
    assert drift(session, connectors, clock) == ({}, [])


def test_only_another_connector_reports_nothing_here(session, connectors, granted, clock):
    assert reconcile(session, connectors, now=clock(), only="ldap") == []


def test_a_connector_that_is_not_configured_is_reported_with_its_error(
    session, connectors, granted, clock
):
    """A grant once made through `gone` (no longer configured): its drift names the error
    and is neither missing nor unauthorised; the directory's is still checked."""
    JobService(session).enqueue(
        "grant", "gone", "group:X", "member", "ada", assignment_id=granted.id, now=clock()
    )
    session.commit()
    report = reconcile(session, connectors, now=clock(), fix=True)
    by_connector = {d.connector: d for d in report}
    gone = by_connector["gone"]
    assert gone.error and (gone.missing, gone.unauthorised) == ({}, set())
    assert by_connector["directory"].error is None


def test_nothing_granted_is_nothing_to_reconcile(session, connectors, clock):
    assert reconcile(session, connectors, now=clock()) == []


def queue_grant(session, granted, clock, resource, user, *, role="member") -> None:
    """A queued grant of `resource` to `user` through the directory, for `granted`."""
    JobService(session).enqueue(
        "grant", "directory", resource, role, user, assignment_id=granted.id, now=clock()
    )


def test_reconcile_goes_a_page_of_resources_at_a_time(session, connectors, granted, clock):
    """Pages of one resource: one page per resource ever granted, in resource order, that
    together are reconcile's report (here: olga in Sales.Ops, granted to nobody yet)."""
    queue_grant(session, granted, clock, "group:Sales.Ops", "ada")
    session.commit()
    pages = list(reconcile_pages(session, connectors, now=clock(), size=1))
    assert [[d.resource for d in page] for page in pages] == [[RESOURCE], ["group:Sales.Ops"]]
    assert pages[1][0].unauthorised == {"olga"} and pages[1][0].missing == {}
    whole = reconcile(session, connectors, now=clock())
    assert [(d.resource, d.missing, d.unauthorised) for page in pages for d in page] == [
        (d.resource, d.missing, d.unauthorised) for d in whole
    ]


def test_a_page_holds_at_most_its_grants_unless_one_resource_has_more(
    session, connectors, granted, clock
):
    """Pages are bounded by grants as well as resources: Scope A's group, granted twice, fills
    a page of at most one grant alone (a resource is never split), and Sales.Ops the next."""
    for user in ("bob", "olga"):
        queue_grant(session, granted, clock, RESOURCE, user)
    queue_grant(session, granted, clock, "group:Sales.Ops", "ada")
    session.commit()
    pages = list(reconcile_pages(session, connectors, now=clock(), grants=1))
    assert [[d.resource for d in page] for page in pages] == [[RESOURCE], ["group:Sales.Ops"]]
    pages = list(reconcile_pages(session, connectors, now=clock(), grants=4))
    assert [[d.resource for d in page] for page in pages] == [[RESOURCE, "group:Sales.Ops"]]


def test_pages_read_as_many_rows_as_the_last_page_needed_and_miss_nothing(
    session, connectors, granted, clock
):
    """Twelve groups of two grants each, pages of at most four grants: the first page reads up
    to `size` rows, the next ones about as many as it used; every group comes once, in order,
    two to a page (the first page also holds Scope A's group, granted once), and together
    they are reconcile's report."""
    groups = [f"Paged.{number:02d}" for number in range(12)]
    directory = DirectoryService(session)
    for group in groups:
        directory.put_group(ROOT, group, None, now=clock())
        for user in ("bob", "olga"):
            queue_grant(session, granted, clock, f"group:{group}", user)
    session.commit()
    pages = list(reconcile_pages(session, connectors, now=clock(), grants=4))
    paged = [[d.resource for d in page if d.resource.startswith("group:Paged.")] for page in pages]
    expected = [f"group:{group}" for group in groups]
    assert [resource for page in paged for resource in page] == expected
    assert [len(page) for page in paged] == [1, 2, 2, 2, 2, 2, 1]
    whole = reconcile(session, connectors, now=clock())
    assert [(d.resource, d.missing, d.unauthorised) for page in pages for d in page] == [
        (d.resource, d.missing, d.unauthorised) for d in whole
    ]


def test_a_page_takes_every_role_of_its_resources_beyond_the_row_limit(
    session, connectors, granted, clock
):
    """Two roles granted on Scope A's group fill a read of two rows: the page still holds
    both (a revoke of an unauthorised holder takes every role ever granted), then Sales.Ops."""
    queue_grant(session, granted, clock, RESOURCE, "bob", role="owner")
    queue_grant(session, granted, clock, "group:Sales.Ops", "ada")
    session.commit()
    DirectoryService(session).add_member(ROOT, GROUP, "olga", now=clock())
    session.commit()
    pages = list(reconcile_pages(session, connectors, now=clock(), size=2, fix=True))
    assert [[d.resource for d in page] for page in pages] == [[RESOURCE], ["group:Sales.Ops"]]
    revokes = session.scalars(
        select(Job.role).where(
            Job.kind == "revoke", Job.subject_id == "olga", Job.resource == RESOURCE
        )
    ).all()
    assert sorted(revokes) == ["member", "owner"]


def grant_job(session, clock, user, assignment, *, role="member", state=JobState.DONE) -> Job:
    """A grant of Scope A's group to `user` through `assignment`, in `state`; committed."""
    job = JobService(session).enqueue(
        "grant", "directory", RESOURCE, role, user, assignment_id=assignment, now=clock()
    )
    job.state = state
    session.commit()
    return job


def test_a_resource_emptied_by_hand_misses_every_holder(session, connectors, granted, clock):
    """The group lists nobody (no member to compare with): ada, who must hold it, is missing."""
    DirectoryService(session).remove_member(ROOT, GROUP, "ada", now=clock())
    session.commit()
    assert drift(session, connectors, clock) == ({"ada": granted.id}, [])


def test_a_person_owed_two_grants_is_missing_once_and_mended_with_the_same_one(
    session, connectors, granted, clock
):
    """ada is owed Scope A through two done grants of one assignment (roles member and
    owner): missing once; each fix queues the same one again (the greater role)."""
    grant_job(session, clock, "ada", granted.id, role="owner")
    DirectoryService(session).remove_member(ROOT, GROUP, "ada", now=clock())
    session.commit()
    for _ in range(2):
        assert drift(session, connectors, clock, fix=True) == ({"ada": granted.id}, [])
    queued = session.scalars(select(Job).where(Job.state == "queued", Job.kind == "grant"))
    assert [(job.subject_id, job.role) for job in queued] == [("ada", "owner")] * 2


def test_a_failed_grant_authorises_nobody_but_its_role_is_revoked(
    session, connectors, granted, clock
):
    """bob, put in by hand, has only a failed grant (role owner): he is unauthorised, and
    fixing takes away both roles ever granted on the group."""
    grant_job(session, clock, "bob", granted.id, role="owner", state=JobState.FAILED)
    DirectoryService(session).add_member(ROOT, GROUP, "bob", now=clock())
    session.commit()
    assert drift(session, connectors, clock, fix=True) == ({}, ["bob"])
    revokes = session.scalars(select(Job).where(Job.kind == "revoke").order_by(Job.role))
    assert [(job.subject_id, job.role) for job in revokes] == [("bob", "member"), ("bob", "owner")]


def test_access_being_taken_away_is_neither_missing_nor_unauthorised(
    session, connectors, granted, clock
):
    """ada's assignment is expiring (its revoke on the way): in the group she may be, out of
    it she is not missing; bob, whose grant is still queued, may be in it too."""
    grant_job(session, clock, "bob", granted.id, state=JobState.QUEUED)
    DirectoryService(session).add_member(ROOT, GROUP, "bob", now=clock())
    session.execute(
        update(Assignment).where(Assignment.id == granted.id).values(state=AssignmentState.EXPIRING)
    )
    session.commit()
    assert drift(session, connectors, clock) == ({}, [])
    DirectoryService(session).remove_member(ROOT, GROUP, "ada", now=clock())
    session.commit()
    assert drift(session, connectors, clock) == ({}, [])


def test_a_grant_without_an_assignment_authorises_nobody(session, connectors, granted, clock):
    """A done grant that names no assignment (or one since deleted) neither makes its person
    missing nor lets them hold the group."""
    grant_job(session, clock, "bob", None)
    assert drift(session, connectors, clock) == ({}, [])
    DirectoryService(session).add_member(ROOT, GROUP, "bob", now=clock())
    session.commit()
    assert drift(session, connectors, clock) == ({}, ["bob"])
