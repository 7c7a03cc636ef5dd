"""Delivery through the outbox: jobs, retries with backoff, failures, retry, expiry."""

from __future__ import annotations

import threading

import pytest

from policyd.api import create_app
from policyd.api.context import components
from policyd.connectors import ConnectorError, registry
from policyd.rules import load_bundle
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from policyd.store.models import Base
from tests.conftest import POLICIES

APP_PACKAGE = """apiVersion: policyd/v1
package:
  id: crm-agents
  displayName: CRM agents
  resources:
    - {connector: directory, resource: "group:CRM.Agents"}
    - {connector: crm, resource: "role:agent"}
  lifetime: {duration: PT8H}
  rules:
    - {id: everyone, then: {decision: auto_approve}}
"""


class FlakyCrm:
    """A small in-memory app with a real failure mode: it is down for the first N calls."""

    def __init__(self, context):
        self.name = context.name
        self.down_for = int(context.settings.get("down_for", 0))
        self.broken = bool(context.settings.get("broken", False))
        self.holders: set[str] = set()
        self.disabled: list[str] = []
        self.deleted: list[str] = []
        self.calls = 0
        self.lock = threading.Lock()
        FlakyCrm.last = self

    def _call(self) -> None:
        with self.lock:
            self.calls += 1
            if self.broken:
                raise ConnectorError("role does not exist", retryable=False)
            if self.calls <= self.down_for:
                raise ConnectorError("crm unavailable", retryable=True)

    def grant(self, target):
        self._call()
        self.holders.add(target.user_id)

    def revoke(self, target):
        self._call()
        self.holders.discard(target.user_id)

    def members(self, resource):
        return set(self.holders)

    def disable_user(self, user_id):
        self._call()
        self.disabled.append(user_id)

    def delete_user(self, user_id):
        self._call()
        self.deleted.append(user_id)

    def health(self):
        self._call()


@pytest.fixture
def make_app(database_url, clock, tmp_path):
    registry.register("flaky-crm", FlakyCrm)
    apps = []

    def make(delivery="worker", extra=None, **settings):
        config = tmp_path / "connectors.yaml"
        config.write_text(
            "apiVersion: policyd/v1\nconnectors:\n"
            f"  - {{name: crm, type: flaky-crm, settings: {settings!r}}}\n".replace("'", '"')
        )
        policies = tmp_path / "policies"
        policies.mkdir(exist_ok=True)
        for name, text in load_bundle(POLICIES).files.items():
            (policies / name).write_text(text)
        (policies / "crm-agents.yaml").write_text(APP_PACKAGE)
        app = create_app(
            {
                "POLICYD_DATABASE_URL": database_url,
                "POLICYD_POLICIES": str(policies),
                "POLICYD_CLOCK": clock,
                "POLICYD_AUTO_UPGRADE": True,
                "POLICYD_CONNECTORS": str(config),
                "POLICYD_DELIVERY": delivery,
                **(extra or {}),
            }
        )
        apps.append(app)
        with components(app).database.session() as session:
            _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=clock())
        headers = {"Authorization": f"Bearer {plain}"}
        client = app.test_client()
        client.put("/v1/users/ada", json={"email": "ada@contoso.com"}, headers=headers)
        return app, client, headers

    yield make
    registry.reset()
    for app in apps:
        components(app).runtime.close()
        with components(app).database.engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
        components(app).database.dispose()


def request_crm(client, headers):
    body = {"package": "crm-agents", "subject": {"id": "ada"}}
    response = client.post("/v1/requests", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def test_jobs_wait_for_the_worker_then_deliver(make_app, clock):
    """In worker mode a request stays delivering until a worker runs its jobs."""
    app, client, admin = make_app()
    request = request_crm(client, admin)
    assert request["state"] == "delivering"
    jobs = client.get("/v1/jobs?state=queued&kind=grant", headers=admin).json
    assert sorted(j["connector"] for j in jobs) == ["crm", "directory"]
    assert components(app).worker.run_jobs(now=clock()) == 2
    assert client.get(f"/v1/requests/{request['id']}", headers=admin).json["state"] == "delivered"
    assert FlakyCrm.last.holders == {"ada"}


def test_a_connector_that_is_down_is_retried_with_backoff(make_app, clock):
    """Failures back off exponentially, and the job succeeds once the system is back."""
    app, client, admin = make_app(down_for=2)
    worker = components(app).worker
    request = request_crm(client, admin)
    worker.run_jobs(now=clock())
    crm_job = client.get("/v1/jobs?state=queued&kind=grant", headers=admin).json[0]
    assert (crm_job["attempts"], crm_job["last_error"]) == (1, "crm unavailable")
    assert worker.run_jobs(now=clock()) == 0  # not due before its backoff
    for _ in range(2):
        clock.advance(minutes=5)
        worker.run_jobs(now=clock())
    assert client.get(f"/v1/requests/{request['id']}", headers=admin).json["state"] == "delivered"
    done = client.get(f"/v1/jobs/{crm_job['id']}", headers=admin).json
    assert (done["state"], done["attempts"]) == ("done", 3)


def test_a_permanent_failure_is_visible_and_retryable(make_app, clock):
    """A non-retryable error fails the job and the request; an operator's retry delivers."""
    app, client, admin = make_app(broken=True)
    request = request_crm(client, admin)
    components(app).worker.run_jobs(now=clock())
    shown = client.get(f"/v1/requests/{request['id']}", headers=admin).json
    assert shown["state"] == "partially_delivered"  # the directory group was granted
    failed = client.get("/v1/jobs?state=failed", headers=admin).json
    assert [(j["connector"], j["last_error"]) for j in failed] == [("crm", "role does not exist")]
    FlakyCrm.last.broken = False
    retried = client.post(f"/v1/jobs/{failed[0]['id']}/retry", headers=admin)
    assert retried.status_code == 200
    components(app).worker.run_jobs(now=clock())
    assert client.get(f"/v1/requests/{request['id']}", headers=admin).json["state"] == "delivered"
    again = client.post(f"/v1/jobs/{failed[0]['id']}/retry", headers=admin)
    assert again.status_code == 409


def test_expiry_revokes_through_the_connectors(make_app, clock):
    """Past expires_at the sweep ends the assignment: the directory group's member goes with
    the expiry's commit, the CRM's revoke job removes the rest of the access."""
    app, client, admin = make_app(delivery="inline")
    request_crm(client, admin)
    assert FlakyCrm.last.holders == {"ada"}
    worker = components(app).worker
    idle = {
        "expired": 0,
        "jobs": 0,
        "escalated": 0,
        "timed_out": 0,
        "reminders": 0,
        "digests": 0,
        "approval_reminders": 0,
        "disabled": 0,
        "deleted": 0,
        "released": 0,
        "published": 0,
        "opened": 0,
        "reminded": 0,
        "closed": 0,
    }
    assert worker.sweep(now=clock()) == {**idle, "jobs": 1}  # the access-granted notice
    assert worker.sweep(now=clock()) == idle
    clock.advance(hours=8)
    # The CRM's revoke, then the access-removed notice that its success queued.
    assert worker.sweep(now=clock()) == {**idle, "expired": 1, "jobs": 2}
    assert FlakyCrm.last.holders == set()
    assignment = client.get("/v1/assignments?subject=ada", headers=admin).json[0]
    assert assignment["state"] == "removed"
    members = client.get("/v1/groups/CRM.Agents/members", headers=admin).json
    assert members == []
    assert worker.sweep(now=clock()) == idle


def test_a_job_claimed_by_a_dead_worker_is_claimed_again(make_app, clock):
    """A worker that dies mid-job leaves a lease; after it lapses another worker runs the job."""
    app, client, admin = make_app()
    request_crm(client, admin)
    from policyd.services.jobs import LEASE, JobService

    with components(app).database.session() as session:
        claimed = JobService(session).claim("dead-worker", now=clock())
    assert len(claimed) == 2
    worker = components(app).worker
    assert worker.run_jobs(now=clock()) == 0
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert worker.run_jobs(now=clock()) == 2
    assert FlakyCrm.last.holders == {"ada"}


def test_unknown_connector_instances_fail_clearly(make_app, clock, tmp_path):
    """A resource naming an instance that is not configured fails its job with the reason."""
    app, client, admin = make_app()
    (tmp_path / "connectors.yaml").write_text("apiVersion: policyd/v1\nconnectors: []\n")
    from policyd.connectors.config import Connectors, load_instances
    from policyd.services.memberships import DirectoryMemberships

    worker = components(app).worker
    worker.connectors = Connectors(
        load_instances(tmp_path / "connectors.yaml"),
        DirectoryMemberships(components(app).database.session),
    )
    request_crm(client, admin)
    worker.run_jobs(now=clock())
    failed = client.get("/v1/jobs?state=failed", headers=admin).json
    assert failed[0]["last_error"] == "no connector instance 'crm' is configured"


def test_guests_are_disabled_then_deleted_after_their_last_access_ends(make_app, clock):
    """With disable_then_delete, a guest's connectors disable them at once and delete them
    30 days later, each once; members are left alone."""
    extra = {"POLICYD_EXTERNAL_USERS": "disable_then_delete"}
    app, client, admin = make_app(delivery="inline", extra=extra)
    client.put(
        "/v1/users/ada", json={"email": "ada@partner.example", "type": "guest"}, headers=admin
    )
    request_crm(client, admin)
    worker = components(app).worker
    assert worker.sweep(now=clock())["disabled"] == 0  # still has access
    clock.advance(hours=8)
    worker.sweep(now=clock())
    assert worker.sweep(now=clock())["disabled"] == 1
    worker.sweep(now=clock())
    assert FlakyCrm.last.disabled == ["ada"] and FlakyCrm.last.deleted == []
    clock.advance(days=30)
    assert worker.sweep(now=clock())["deleted"] == 1
    worker.sweep(now=clock())
    assert FlakyCrm.last.deleted == ["ada"]
    assert worker.sweep(now=clock())["deleted"] == 0


def test_a_slow_worker_does_not_redo_a_job_taken_over_by_another(make_app, clock):
    """Once a job's lease lapses and another worker runs it, the first worker leaves it."""
    from policyd.services.jobs import LEASE, JobService
    from policyd.worker import Worker

    app, client, admin = make_app()
    request_crm(client, admin)
    worker_b = components(app).worker
    worker_a = Worker(
        components(app).database.session,
        worker_b.connectors,
        worker_b.runtime,
        name="slow-a",
    )
    with components(app).database.session() as session:
        claimed = JobService(session).claim("slow-a", now=clock())
    crm_job = next(job for job in claimed if job.connector == "crm")
    clock.advance(seconds=LEASE.total_seconds() + 1)
    assert worker_b.run_jobs(now=clock()) == 2
    calls = FlakyCrm.last.calls
    worker_a.run_one(crm_job, clock())  # the slow worker finally gets to it
    assert FlakyCrm.last.calls == calls
    job = client.get(f"/v1/jobs/{crm_job.id}", headers=admin).json
    assert (job["state"], job["attempts"]) == ("done", 2)


def test_a_grant_still_backing_off_when_access_ends_is_canceled_not_run(make_app, clock):
    """The crm is down, so ada's crm grant backs off; her access is removed meanwhile: the
    grant is canceled (failed, with the reason) and never reaches the crm afterwards."""
    app, client, admin = make_app(down_for=1)
    request = request_crm(client, admin)
    worker = components(app).worker
    worker.run_jobs(now=clock())
    assignment = client.get("/v1/assignments?subject=ada", headers=admin).json[0]

    client.delete(f"/v1/assignments/{assignment['id']}", headers=admin)
    clock.advance(minutes=5)
    worker.sweep(now=clock())

    (grant,) = [
        job
        for job in client.get("/v1/jobs?kind=grant", headers=admin).json
        if job["connector"] == "crm"
    ]
    assert grant["state"] == "failed"
    assert grant["last_error"] == "canceled: assignment.removal_requested"
    assert FlakyCrm.last.holders == set()
    shown = client.get(f"/v1/assignments/{assignment['id']}", headers=admin).json
    assert shown["state"] == "removed" and request["id"] == shown["request_id"]
    again = client.post(f"/v1/jobs/{grant['id']}/retry", headers=admin)
    assert again.status_code == 409 and "access that ended" in again.json["message"]


def test_a_revoke_waits_while_the_grant_it_undoes_is_running(make_app, clock):
    """A grant claimed by a worker is still running when the access ends: its revoke is not
    claimed until the grant is done, so it cannot run first and be undone by the grant."""
    from policyd.services.jobs import JobService

    app, client, admin = make_app()
    request_crm(client, admin)
    with components(app).database.session() as session:
        claimed = JobService(session).claim("slow-worker", now=clock())
    assert {job.kind for job in claimed} == {"grant"}
    assignment = client.get("/v1/assignments?subject=ada", headers=admin).json[0]
    client.delete(f"/v1/assignments/{assignment['id']}", headers=admin)
    worker = components(app).worker

    assert worker.run_jobs(now=clock()) == 0  # both revokes wait for their grants
    # The slow worker's grant reaches the crm only now, after the access ended, and is done.
    FlakyCrm.last.holders.add("ada")
    with components(app).database.session() as session:
        JobService(session).finish_many([job.id for job in claimed], "slow-worker", now=clock())
        session.commit()
    assert FlakyCrm.last.holders == {"ada"}
    assert worker.run_jobs(now=clock()) == 2

    assert FlakyCrm.last.holders == set()
