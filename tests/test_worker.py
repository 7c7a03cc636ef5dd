"""The worker's bulk paths: connectors that grant and revoke many targets per call, and
mass expiry in batches, with reference counting across and within batches."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from policyd.api import create_app
from policyd.api.context import components
from policyd.connectors import ConnectorError, registry
from policyd.services.actor import SYSTEM
from policyd.services.external_users import ExternalUsers
from policyd.services.tokens import TokenService
from policyd.setting_values import parse_reminders
from policyd.store.models import Base
from tests.conftest import Clock
from tests.connectors.ldap_server import slapd
from tests.connectors.scim_server import scim_server
from tests.connectors.webhook_server import webhook_server
from tests.e2e_support import make_stack

__all__ = ["make_stack", "scim_server", "slapd", "webhook_server"]  # fixtures for pytest

PACKAGE = """apiVersion: policyd/v1
package:
  id: {id}
  displayName: {id}
  resources:
{resources}
  lifetime: {{duration: {duration}}}
  rules:
    - {{id: everyone, then: {{decision: auto_approve}}}}
"""
EXTENDABLE = """apiVersion: policyd/v1
package:
  id: ext
  displayName: ext
  resources:
    - {connector: directory, resource: "group:Ext"}
  rules:
    - id: everyone
      then: {decision: auto_approve, lifetime: {duration: PT8H, extendable: true}}
"""
HOOKED = """apiVersion: policyd/v1
package:
  id: hooked
  displayName: hooked
  resources:
    - {connector: sink, resource: "app:hooked"}
  lifetime: {duration: PT8H}
  rules:
    - id: p11-approves
      then:
        decision: require_approval
        approval:
          stages:
            - {approvers: ["user:p11"]}
"""
SHARED = '    - {connector: directory, resource: "group:Shared"}'
CRM = '    - {connector: crm, resource: "role:agent"}'


class EventSink:
    """An in-memory receiver of lifecycle events, like a webhook: grant and revoke are events
    too."""

    def __init__(self, context):
        self.name = context.name
        self.received: list[tuple[str, dict, str]] = []  # (event, payload, event id)

    def send(self, event, payload, event_id):
        self.received.append((event, dict(payload), event_id))

    def grant(self, target):
        self.send("access.granted", {"user": {"id": target.user_id}}, target.operation_id)

    def revoke(self, target):
        self.send("access.removed", {"user": {"id": target.user_id}}, target.operation_id)

    def members(self, resource):
        return set()

    def health(self):
        pass


def event_sink(context):
    return EventSink(context)


event_sink.takes_events = True


class BulkCrm:
    """An in-memory app that grants and revokes in bulk, with per-target and whole-call
    failures on demand."""

    def __init__(self, context):
        self.name = context.name
        self.holders: set[str] = set()
        self.refuse: set[str] = set()  # users whose grant or revoke fails (retryable)
        self.down = False  # every call fails
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def _apply(self, kind, targets):
        with self.lock:
            self.calls.append((kind, len(targets)))
            if self.down:
                raise ConnectorError("crm unavailable")
            results = []
            for target in targets:
                if target.user_id in self.refuse:
                    results.append(ConnectorError(f"quota exceeded for {target.user_id}"))
                    continue
                (self.holders.add if kind == "grant" else self.holders.discard)(target.user_id)
                results.append(None)
            return results

    def grant_many(self, targets):
        return self._apply("grant", targets)

    def revoke_many(self, targets):
        return self._apply("revoke", targets)

    def grant(self, target):
        if error := self.grant_many([target])[0]:
            raise error

    def revoke(self, target):
        if error := self.revoke_many([target])[0]:
            raise error

    def members(self, resource):
        return set(self.holders)

    def health(self):
        pass


@dataclass
class Stack:
    app: object
    client: object
    headers: dict[str, str]
    clock: Clock

    @property
    def worker(self):
        return components(self.app).worker

    def request(self, person: str, package: str) -> dict:
        body = {"package": package, "subject": {"id": person}}
        response = self.client.post("/v1/requests", json=body, headers=self.headers)
        assert response.status_code == 201, response.json
        return response.json

    def get(self, path: str):
        response = self.client.get(path, headers=self.headers)
        assert response.status_code == 200, response.json
        return response.json

    def members(self, group: str) -> set[str]:
        return {m["user_id"] for m in self.get(f"/v1/groups/{group}/members?page_size=100")}

    def jobs(self, **query) -> list[dict]:
        pairs = "&".join(f"{key}={value}" for key, value in query.items())
        return self.get(f"/v1/jobs?page_size=100&{pairs}")


PEOPLE = [f"p{i:02}" for i in range(12)]


@pytest.fixture
def stack(database_url, tmp_path):
    """Worker mode with reminders 2 hours and 1 day before access ends; packages `crm` (PT8H)
    and `a`, `b` (PT8H) and `c` (P1D), which all grant the directory group Shared; people
    p00..p11."""
    registry.register("bulk-crm", BulkCrm)
    registry.register("event-sink", event_sink)
    connectors = tmp_path / "connectors.yaml"
    connectors.write_text(
        "apiVersion: policyd/v1\nconnectors:\n"
        "  - {name: crm, type: bulk-crm}\n"
        "  - {name: sink, type: event-sink}\n"
    )
    policies = tmp_path / "policies"
    policies.mkdir()
    packages = {"crm": (CRM, "PT8H"), "a": (SHARED, "PT8H"), "b": (SHARED, "PT8H")}
    packages["c"] = (SHARED, "P1D")
    for package, (resources, duration) in packages.items():
        text = PACKAGE.format(id=package, resources=resources, duration=duration)
        (policies / f"{package}.yaml").write_text(text)
    (policies / "ext.yaml").write_text(EXTENDABLE)
    (policies / "hooked.yaml").write_text(HOOKED)
    clock = Clock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    app = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": str(policies),
            "POLICYD_CLOCK": clock,
            "POLICYD_AUTO_UPGRADE": True,
            "POLICYD_CONNECTORS": str(connectors),
            "POLICYD_DELIVERY": "worker",
            "POLICYD_REMINDERS": "PT2H, P1D",
        }
    )
    with components(app).database.session() as session:
        _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=clock())
    stack = Stack(app, app.test_client(), {"Authorization": f"Bearer {plain}"}, clock)
    for person in PEOPLE:
        body = {"email": f"{person}@contoso.com"}
        response = stack.client.put(f"/v1/users/{person}", json=body, headers=stack.headers)
        assert response.status_code == 200
    yield stack
    registry.reset()
    components(app).runtime.close()
    with components(app).database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    components(app).database.dispose()


def test_a_bulk_connector_gets_one_call_for_many_jobs(stack):
    """Twelve grants for a connector with grant_many reach it as one call."""
    requests = [stack.request(person, "crm") for person in PEOPLE]
    assert stack.worker.sweep(now=stack.clock())["jobs"] >= len(PEOPLE)
    crm = stack.worker.connectors.get("crm")
    assert crm.calls == [("grant", len(PEOPLE))]
    assert crm.holders == set(PEOPLE)
    for request in requests:
        assert stack.get(f"/v1/requests/{request['id']}")["state"] == "delivered"


def test_a_target_the_bulk_call_refuses_is_retried_alone(stack):
    """A per-target error fails only that job: it backs off with the reason; the others are
    done, and the refused one is delivered once the app accepts it."""
    requests = {person: stack.request(person, "crm") for person in PEOPLE[:4]}
    crm = stack.worker.connectors.get("crm")
    crm.refuse = {"p03"}
    stack.worker.sweep(now=stack.clock())
    assert crm.holders == {"p00", "p01", "p02"}
    queued = stack.jobs(kind="grant", state="queued")
    assert [(job["subject_id"], job["attempts"]) for job in queued] == [("p03", 1)]
    assert "quota exceeded for p03" in queued[0]["last_error"]
    assert stack.get(f"/v1/requests/{requests['p03']['id']}")["state"] == "delivering"
    crm.refuse = set()
    stack.clock.advance(minutes=5)
    stack.worker.sweep(now=stack.clock())
    assert crm.holders == {"p00", "p01", "p02", "p03"}
    assert stack.get(f"/v1/requests/{requests['p03']['id']}")["state"] == "delivered"


def test_a_bulk_call_that_fails_whole_fails_every_job_of_it(stack):
    """When the call itself raises, every job in it backs off; nothing is lost."""
    crm = stack.worker.connectors.get("crm")
    crm.down = True
    for person in PEOPLE[:5]:
        stack.request(person, "crm")
    stack.worker.sweep(now=stack.clock())
    queued = stack.jobs(kind="grant", state="queued")
    assert len(queued) == 5 and all("crm unavailable" in job["last_error"] for job in queued)
    crm.down = False
    stack.clock.advance(minutes=5)
    stack.worker.sweep(now=stack.clock())
    assert crm.holders == set(PEOPLE[:5])
    assert stack.jobs(kind="grant", state="queued") == []


def test_mass_expiry_counts_references_across_and_within_batches(stack):
    """People whose two expiring assignments grant the same group lose it once (a group of
    policyd's directory: in the expiry's transaction, no revoke job); people who still hold
    it through a longer assignment keep it; batches of 5 split them."""
    both_end, one_stays = PEOPLE[:6], PEOPLE[6:]
    for person in both_end:
        stack.request(person, "a")
        stack.request(person, "b")
    for person in one_stays:
        stack.request(person, "a")
        stack.request(person, "c")
    stack.worker.sweep(now=stack.clock())
    assert stack.members("Shared") == set(PEOPLE)
    stack.clock.advance(hours=8, minutes=1)
    result = stack.worker.sweep(now=stack.clock(), batch=5)
    assert result["expired"] == 2 * len(both_end) + len(one_stays)
    assert stack.members("Shared") == set(one_stays)
    assert stack.jobs(kind="revoke") == []
    records = stack.get("/v1/audit?action=directory.member_removed&page_size=100")
    removed = Counter(r["before"]["user_id"] for r in records if r["object_id"] == "Shared")
    assert removed == Counter(both_end)  # once each, for the shared group
    assignments = stack.get("/v1/assignments?page_size=100")
    states = Counter((a["package"], a["state"]) for a in assignments)
    assert states == {("a", "removed"): 12, ("b", "removed"): 6, ("c", "active"): 6}
    assert stack.worker.sweep(now=stack.clock()) == {**dict.fromkeys(result, 0)}  # nothing left


def test_reminders_follow_the_setting_and_go_out_once_per_assignment(stack):
    """POLICYD_REMINDERS="PT2H, P1D": 8-hour access gets the 2-hour reminder only (a day
    before would be before it began), each assignment once, whatever the sweeps."""
    assert stack.worker.scheduler.context.reminders == (timedelta(days=1), timedelta(hours=2))
    for person in PEOPLE:
        stack.request(person, "crm")
    stack.worker.sweep(now=stack.clock())
    stack.clock.advance(hours=5, minutes=59)
    assert stack.worker.sweep(now=stack.clock())["reminders"] == 0
    stack.clock.advance(minutes=2)
    assert stack.worker.sweep(now=stack.clock())["reminders"] == len(PEOPLE)
    assert stack.worker.sweep(now=stack.clock())["reminders"] == 0
    reminders = [job for job in stack.jobs(kind="notify") if job["role"] == "before:7200"]
    assert sorted(job["subject_id"] for job in reminders) == PEOPLE
    assignments = {a["id"] for a in stack.get("/v1/assignments?page_size=100")}
    assert {job["assignment_id"] for job in reminders} == assignments


@pytest.mark.parametrize(
    ("text", "offsets"),
    [
        ("P14D,P1D", (timedelta(days=14), timedelta(days=1))),
        (" PT2H , P1D,PT2H ", (timedelta(days=1), timedelta(hours=2))),
        ("", ()),
    ],
)
def test_reminder_settings_parse(text, offsets):
    """Offsets are ISO-8601 durations, comma separated, duplicates once; empty means none."""
    assert parse_reminders(text) == offsets


@pytest.mark.parametrize(("text", "message"), [("P1M", "in days or hours"), ("2d", "ISO-8601")])
def test_a_bad_reminder_setting_is_refused_with_its_name(database_url, text, message):
    """A reminder offset in months, or not a duration, stops the start and names the setting."""
    with pytest.raises(ValueError, match=f"POLICYD_REMINDERS: .*{message}"):
        create_app({"POLICYD_DATABASE_URL": database_url, "POLICYD_REMINDERS": text})


def test_an_extended_assignment_is_reminded_of_its_new_end(stack):
    """Reminders already sent belong to the old end; after an extension they come again."""
    stack.request("p00", "ext")
    stack.worker.sweep(now=stack.clock())
    stack.clock.advance(hours=6, minutes=1)
    assert stack.worker.sweep(now=stack.clock())["reminders"] == 1
    assignment = stack.get("/v1/assignments?subject=p00")[0]
    extended = stack.client.post(
        f"/v1/assignments/{assignment['id']}/extend", json={}, headers=stack.headers
    )
    assert extended.status_code == 201, extended.json
    assert stack.get(f"/v1/assignments/{assignment['id']}")["expires_at"] > assignment["expires_at"]
    assert stack.worker.sweep(now=stack.clock())["reminders"] == 0  # 8 hours left again
    stack.clock.advance(hours=6, minutes=1)
    assert stack.worker.sweep(now=stack.clock())["reminders"] == 1
    reminders = [job["role"] for job in stack.jobs(kind="notify") if "before" in job["role"]]
    old_end = assignment["expires_at"].replace("Z", "+00:00")
    assert sorted(reminders) == ["before:7200", f"before:7200@{old_end}"]


def test_lifecycle_events_reach_the_connectors_that_take_them(stack):
    """A request for a package with a resource on an event-taking connector sends
    request.created, then request.approved naming the approver, then the grant; packages
    without one queue no events."""
    request = stack.request("p00", "hooked")
    stack.request("p01", "crm")
    stack.worker.sweep(now=stack.clock())
    sink = stack.worker.connectors.get("sink")
    assert [event for event, _, _ in sink.received] == ["request.created"]
    _, created, event_id = sink.received[0]
    assert created["request"]["id"] == request["id"] and created["decision"] == "require_approval"
    assert (created["user"]["id"], created["resource"]) == ("p00", "app:hooked")
    (send,) = stack.jobs(kind="send")
    assert (send["id"], send["state"]) == (event_id, "done")  # the job id is the event id
    approve = stack.client.post(
        f"/v1/requests/{request['id']}/approve", json={}, headers=token_for(stack, "p11")
    )
    assert approve.status_code == 200, approve.json
    stack.worker.sweep(now=stack.clock())
    # Each event is its own job with its own retries: they arrive in no promised order, and
    # `occurred_at` says when each happened.
    events = {event: payload for event, payload, _ in sink.received}
    assert sorted(events) == ["access.granted", "request.approved", "request.created"]
    assert events["request.approved"]["approved_by"] == "p11"
    assert events["request.approved"]["occurred_at"] == stack.clock().isoformat()
    assert {job["role"] for job in stack.jobs(kind="send")} == {
        "request.created",
        "request.approved",
    }


def token_for(stack, user):
    with components(stack.app).database.session() as session:
        _, plain = TokenService(session).create(SYSTEM, user, "user", now=stack.clock())
    return {"Authorization": f"Bearer {plain}"}


def test_guests_whose_access_ended_are_disabled_once_each_in_one_sweep(stack):
    """Five guests and a member lose their access at once: the five are disabled in the
    connectors that granted them something, once; the member is left alone."""
    stack.worker.configure(external_users=ExternalUsers.DISABLE)
    guests = PEOPLE[:5]
    for person in PEOPLE[:6]:
        kind = "guest" if person in guests else "member"
        body = {"email": f"{person}@partner.example", "type": kind}
        stack.client.put(f"/v1/users/{person}", json=body, headers=stack.headers)
        stack.request(person, "crm")
        stack.request(person, "a")
    stack.worker.sweep(now=stack.clock())
    stack.clock.advance(hours=8, minutes=1)
    assert stack.worker.sweep(now=stack.clock())["disabled"] == 0  # ended during this sweep
    assert stack.worker.sweep(now=stack.clock())["disabled"] == len(guests)
    assert stack.worker.sweep(now=stack.clock())["disabled"] == 0
    disabled = sorted((j["subject_id"], j["connector"]) for j in stack.jobs(kind="disable_user"))
    assert disabled == sorted((g, c) for g in guests for c in ("crm", "directory"))


def test_a_bulk_call_answering_the_wrong_number_of_results_fails_its_jobs(stack):
    """A plugin whose grant_many answers fewer results than targets fails those jobs with
    the reason, instead of breaking the sweep."""
    crm = stack.worker.connectors.get("crm")
    crm.grant_many = lambda targets: [None]  # a broken plugin
    for person in PEOPLE[:3]:
        stack.request(person, "crm")
    stack.worker.sweep(now=stack.clock())
    failed = stack.jobs(kind="grant", state="failed")
    assert len(failed) == 3
    assert all("grant_many returned 1 results for 3 targets" in job["last_error"] for job in failed)


SINKED = """apiVersion: policyd/v1
package:
  id: a
  displayName: a
  resources:
    - {connector: directory, resource: "group:Shared"}
    - {connector: sink, resource: "app:a"}
  lifetime: {duration: PT8H}
  rules:
    - {id: everyone, then: {decision: auto_approve}}
"""


def test_a_running_policyd_worker_follows_a_newly_published_version(stack, database_url, tmp_path):
    """A worker built as `policyd worker` builds it loads version 1; after version 2 (which
    adds the event sink to package a) is published, its next sweep works under version 2:
    the expiry reminder of a's holder reaches the sink as access.expiring."""
    from policyd.cli.worker import _worker
    from policyd.rules import load_bundle
    from policyd.settings import Settings

    settings = Settings.from_mapping(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_CONNECTORS": str(tmp_path / "connectors.yaml"),
            "POLICYD_REMINDERS": "PT2H",
        }
    )
    with _worker(settings) as runner:
        first = runner.runtime.active.version
        stack.request("p00", "a")
        runner.sweep(now=stack.clock())
        files = {**load_bundle(tmp_path / "policies").files, "a.yaml": SINKED}
        published = stack.client.post(
            "/v1/policy-versions", json={"files": files}, headers=stack.headers
        )
        assert published.status_code == 201, published.json
        runner.policy_sync.interval = 0  # instead of waiting the 2 s between checks
        stack.clock.advance(hours=6, minutes=1)

        runner.sweep(now=stack.clock())

        assert runner.runtime.active.version == published.json["id"] != first
        sink = runner.connectors.get("sink")
        assert [event for event, _, _ in sink.received] == ["access.expiring"]


def test_a_live_workers_heartbeat_keeps_its_jobs_from_another_worker(stack):
    """A grant that takes 3 s, on a 1.5 s lease: the heartbeat renews the lease, so a second
    worker looking 2.2 s later finds nothing to take, and the grant runs once."""
    from policyd.worker import Worker

    crm = stack.worker.connectors.get("crm")
    original = crm.grant_many
    calls = []

    def slow(targets):
        calls.append(len(targets))
        time.sleep(3)
        return original(targets)

    crm.grant_many = slow
    stack.worker.lease = timedelta(seconds=1.5)
    stack.request("p00", "crm")
    now = stack.clock()
    first = threading.Thread(target=stack.worker.run_jobs, kwargs={"now": now, "limit": 5})
    first.start()
    time.sleep(2.2)
    other = Worker(stack.worker.sessions, stack.worker.connectors, stack.worker.runtime, "other")

    taken = other.run_jobs(now=now + timedelta(seconds=2.2), limit=5)
    first.join()

    assert taken == 0
    assert calls == [1]
    assert crm.holders == {"p00"}
    (job,) = stack.jobs(kind="grant", state="done")
    assert job["attempts"] == 1


def test_a_worker_takes_over_the_jobs_of_a_dead_worker_of_its_machine_at_once(stack):
    """A job claimed by a worker process of this machine that is gone (its lease still far
    off) is queued again by the next sweep and delivered, instead of waiting out the lease."""
    import socket
    import subprocess
    import sys

    from sqlalchemy import update

    from policyd.store.models import Job

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stack.request("p00", "crm")
    with components(stack.app).database.session() as session:
        session.execute(
            update(Job)
            .where(Job.kind == "grant")
            .values(
                state="running",
                locked_by=f"{socket.gethostname()}:{gone.pid}:1",
                locked_until=stack.clock() + timedelta(hours=1),
                attempts=1,
            )
        )
        session.commit()

    result = stack.worker.sweep(now=stack.clock())

    assert result["released"] == 1
    (job,) = stack.jobs(kind="grant")
    assert (job["state"], job["attempts"]) == ("done", 2)
    assert stack.worker.connectors.get("crm").holders == {"p00"}


def test_a_worker_leaves_the_jobs_of_a_live_worker_alone(stack):
    """A job held by a live process of this machine (this one) is not taken over."""
    import os
    import socket

    from sqlalchemy import update

    from policyd.store.models import Job

    stack.request("p00", "crm")
    with components(stack.app).database.session() as session:
        holder = f"{socket.gethostname()}:{os.getppid()}:1"
        session.execute(
            update(Job)
            .where(Job.kind == "grant")
            .values(
                state="running", locked_by=holder, locked_until=stack.clock() + timedelta(hours=1)
            )
        )
        session.commit()

    assert stack.worker.sweep(now=stack.clock())["released"] == 0
    (job,) = stack.jobs(kind="grant")
    assert job["state"] == "running"


@pytest.mark.parametrize("value", ["PT0S", "PT0.5S", "P2D", "5", "P1M"])
def test_a_bad_job_lease_stops_the_start_naming_the_setting(database_url, value):
    """POLICYD_JOB_LEASE must be an ISO-8601 duration from PT1S to P1D."""
    from policyd.settings import SettingError

    with pytest.raises(SettingError, match="POLICYD_JOB_LEASE"):
        create_app({"POLICYD_DATABASE_URL": database_url, "POLICYD_JOB_LEASE": value})


def test_a_policyd_worker_process_follows_a_publication_within_the_sync_interval(
    make_stack, slapd, monkeypatch, tmp_path
):
    """A `policyd worker` process started under version 1 (payroll grants an LDAP group)
    sends the access.expiring event to the webhook app that version 2 adds to payroll, once
    version 2 is published while it runs: its reminders follow the new version."""
    from sqlalchemy import update

    from policyd.rules import load_bundle
    from policyd.store.models import Assignment
    from tests.e2e_support import (
        WorkerProcess,
        ldap_resource,
        new_ldap_group,
        package_file,
        webhook_resource,
    )

    monkeypatch.setenv("POLICYD_REMINDERS", "PT1H")
    clock = Clock(datetime.now(UTC))
    group = new_ldap_group(slapd)
    stack = make_stack(
        {"payroll.yaml": package_file("payroll", [ldap_resource(group)])}, clock=clock
    )
    person = stack.add_person("follower")
    request = stack.request("payroll", person)
    worker = WorkerProcess(stack, tmp_path / "worker.log")
    try:
        worker.start()
        worker.wait_for(
            lambda: stack.assignment(request)["state"] == "active", "the grant delivered"
        )
        resources = [ldap_resource(group), webhook_resource("app:payroll")]
        files = {
            **load_bundle(tmp_path / "policies").files,
            "payroll.yaml": package_file("payroll", resources),
        }
        published = stack.client.post(
            "/v1/policy-versions", json={"files": files}, headers=stack.admin
        )
        assert published.status_code == 201, published.json
        time.sleep(4)  # the worker checks the active version every 2 s, at its next sweep
        with components(stack.app).database.session() as session:
            # Backdated: the access began 2 hours ago and ends in 30 minutes, so the 1-hour
            # reminder is due now.
            session.execute(
                update(Assignment).values(
                    starts_at=datetime.now(UTC) - timedelta(hours=2),
                    expires_at=datetime.now(UTC) + timedelta(minutes=30),
                )
            )
            session.commit()

        worker.wait_for(lambda: stack.events("access.expiring"), "access.expiring at the app")
    finally:
        worker.stop()
    (event,) = stack.events("access.expiring")
    assert event["user"]["id"] == person.user_id
