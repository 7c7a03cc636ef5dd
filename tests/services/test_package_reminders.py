"""A package's own reminders (expiry and approval) over the service's settings, and the
owners' and managers' digest of access about to end."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import RequestOptions
from policyd.periodic import TaskContext
from policyd.rules import PolicyRuntime, load_bundle
from policyd.services.actor import Actor, Role
from policyd.services.approval_reminders import remind_approvers, send_approval_reminders
from policyd.services.messages import Messages
from policyd.services.notifications import message, queue_reminders, remind_due, send_reminders
from policyd.services.requests import RequestService
from policyd.store.models import Job

GLOBAL = (timedelta(days=14), timedelta(days=1))
CATALOG = """apiVersion: policyd/v1
catalogs:
  - {id: hr, displayName: HR, owners: ["user:max"]}
"""
PAYROLL = """apiVersion: policyd/v1
package:
  id: payroll
  displayName: Payroll
  catalog: hr
  owners: ["user:olga"]
  managers: ["group:Group.ScopeA.Approvers"]
  lifetime: {duration: P30D}
  reminders:
    expiry: [P7D]
    approval: P1D
  rules:
    - id: sales
      when: {subject.department: Sales}
      then: {decision: auto_approve, reason: Sales staff}
    - id: others
      when: {subject.department: {ne: Sales}}
      then:
        decision: require_approval
        reason: Needs the payroll owner
        approval: {stages: [{approvers: ["user:olga"], timeout: P5D}]}
"""
WIKI = """apiVersion: policyd/v1
package:
  id: wiki
  displayName: Wiki
  owners: ["user:olga"]
  lifetime: {duration: P30D}
  rules:
    - id: everyone
      then: {decision: auto_approve, reason: Open to all}
"""


@pytest.fixture(scope="module")
def reminder_bundle(tmp_path_factory: pytest.TempPathFactory):
    folder: Path = tmp_path_factory.mktemp("rules")
    for name, text in (("catalogs", CATALOG), ("payroll", PAYROLL), ("wiki", WIKI)):
        (folder / f"{name}.yaml").write_text(text)
    return load_bundle(folder)


@pytest.fixture
def runtime(reminder_bundle):
    """The reminder packages, active (instead of the example policies)."""
    policies = PolicyRuntime(reminder_bundle)
    yield policies
    policies.close()


@pytest.fixture
def grant(session, runtime, people, deliver, clock):
    def make(user: str, package: str) -> str:
        request, _ = RequestService(session, runtime).create(
            Actor(user, Role.USER), package, user, None, RequestOptions(), now=clock()
        )
        deliver(clock())
        return request.id

    return make


def jobs(session, kind: str) -> list[tuple[str, str, str]]:
    """(object id, recipient, key) of the queued notify jobs of `kind`, sorted."""
    rows = session.execute(
        select(Job.resource, Job.subject_id, Job.role).where(
            Job.kind == "notify", Job.resource.startswith(f"{kind}:")
        )
    )
    return sorted((resource.partition(":")[2], to, key) for resource, to, key in rows)


def test_the_rule_file_sets_the_packages_reminders(reminder_bundle):
    """reminders.expiry and reminders.approval load, and are kept by the bundle."""
    policy = reminder_bundle.packages["payroll"].reminders
    assert policy.expiry == (timedelta(days=7),) and policy.approval == timedelta(days=1)
    assert set(reminder_bundle.reminders) == {"payroll"}


def test_a_packages_own_expiry_schedule_replaces_the_settings(session, runtime, grant, clock):
    """payroll reminds 7 days before the end only; wiki keeps the service's 14 and 1 days."""
    grant("sam", "payroll")
    grant("sam", "wiki")

    def reminded() -> list[str]:
        return [key for _, _, key in jobs(session, "access_expiring")]

    clock.advance(days=16, seconds=1)
    assert remind_due(session, now=clock(), offsets=GLOBAL, runtime=runtime) == 1
    assert reminded() == ["before:1209600"]  # wiki, 14 days before
    clock.advance(days=7)
    assert remind_due(session, now=clock(), offsets=GLOBAL, runtime=runtime) == 1
    assert sorted(reminded()) == ["before:1209600", "before:604800"]  # payroll, 7 days
    clock.advance(days=6)
    assert remind_due(session, now=clock(), offsets=GLOBAL, runtime=runtime) == 1  # wiki only
    assert remind_due(session, now=clock(), offsets=GLOBAL, runtime=runtime) == 0


def test_owners_managers_and_catalog_owners_get_one_digest_per_run(session, runtime, grant, clock):
    """Two payroll assignments reminded in one run make one digest for each owner (olga),
    manager (the approvers group) and catalog owner (max), listing both."""
    grant("sam", "payroll")
    grant("max", "payroll")
    clock.advance(days=23, seconds=1)
    counts = queue_reminders(session, now=clock(), offsets=GLOBAL, runtime=runtime)
    assert counts == {"reminders": 2, "digests": 5}
    digests = session.scalars(
        select(Job).where(Job.resource.startswith("access_expiring_digest:"))
    ).all()
    assert sorted(job.subject_id for job in digests) == ["ada", "bob", "carol", "max", "olga"]
    assert all(len(job.payload["assignments"]) == 2 for job in digests)
    olga = next(job for job in digests if job.subject_id == "olga")
    found = message(session, olga.resource, "olga", Messages(runtime=runtime), olga.payload)
    assert found is not None
    assert found.rendered.subject == "Access ending soon in your packages: 2"
    assert "Payroll: ends 2026-02-04 09:00 UTC" in found.rendered.text
    assert queue_reminders(session, now=clock(), offsets=GLOBAL, runtime=runtime) == {
        "reminders": 0,
        "digests": 0,
    }


def test_approvers_are_reminded_once_per_interval_of_the_package(session, runtime, people, clock):
    """payroll's approval: P1D reminds olga a day after the stage began, again a day later,
    once each however often the task runs; the service's P3D does not apply to it."""
    request, _ = RequestService(session, runtime).create(
        Actor("bob", Role.USER), "payroll", "bob", None, RequestOptions(), now=clock()
    )
    session.commit()
    bundle, interval = runtime.active.bundle, timedelta(days=3)
    clock.advance(hours=23)
    assert remind_approvers(session, now=clock(), interval=interval, bundle=bundle) == 0
    clock.advance(hours=1)
    assert remind_approvers(session, now=clock(), interval=interval, bundle=bundle) == 1
    assert remind_approvers(session, now=clock(), interval=interval, bundle=bundle) == 0
    clock.advance(days=1)
    assert remind_approvers(session, now=clock(), interval=None, bundle=bundle) == 1
    assert [to for _, to, _ in jobs(session, "approval_reminder")] == ["olga", "olga"]
    found = message(session, f"approval_reminder:{request.id}", "olga", Messages(runtime=runtime))
    assert found is not None
    assert found.rendered.subject == "Reminder: approval needed: payroll for bob"
    assert "waiting since 2026-01-05 09:00 UTC for Payroll" in found.rendered.text


def test_a_decided_request_is_not_reminded_of(session, runtime, people, clock):
    """Once olga decides, no reminder is due for the request."""
    request, _ = RequestService(session, runtime).create(
        Actor("bob", Role.USER), "payroll", "bob", None, RequestOptions(), now=clock()
    )
    RequestService(session, runtime).decide_stage(
        Actor("olga", Role.USER), request.id, "deny", comment=None, now=clock()
    )
    session.commit()
    clock.advance(days=2)
    bundle = runtime.active.bundle
    assert remind_approvers(session, now=clock(), interval=None, bundle=bundle) == 0


def test_the_periodic_tasks_take_the_services_settings(session, runtime, grant, clock):
    """notifications.remind and approvals.remind, given the worker's settings, queue the
    package's expiry reminder, the owners' digests and the approval reminder."""

    def sessions() -> Session:
        return Session(bind=session.connection(), join_transaction_mode="create_savepoint")

    context = TaskContext(
        sessions=sessions, runtime=runtime, reminders=GLOBAL, approval_reminder=timedelta(days=3)
    )
    grant("sam", "payroll")
    RequestService(session, runtime).create(
        Actor("bob", Role.USER), "payroll", "bob", None, RequestOptions(), now=clock()
    )
    session.commit()
    clock.advance(days=1, seconds=1)
    assert send_approval_reminders(context, clock()) == {"approval_reminders": 1}
    clock.advance(days=22)
    assert send_reminders(context, clock()) == {"reminders": 1, "digests": 5}
