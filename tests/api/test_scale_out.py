"""Several workers on one database: every job is claimed and run exactly once."""

from __future__ import annotations

import threading

from policyd.api import create_app
from policyd.api.context import components
from policyd.services.actor import SYSTEM
from policyd.services.jobs import JobService
from policyd.services.tokens import TokenService
from policyd.store.models import Base
from policyd.worker import Worker
from tests.conftest import POLICIES


def test_two_workers_run_each_job_once(database_url, clock):
    """Two workers draining 60 queued grants concurrently each claim disjoint jobs."""
    app = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": str(POLICIES),
            "POLICYD_CLOCK": clock,
            "POLICYD_AUTO_UPGRADE": True,
            "POLICYD_DELIVERY": "worker",
        }
    )
    database = components(app).database
    try:
        with database.session() as session:
            _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=clock())
        admin = {"Authorization": f"Bearer {plain}"}
        client = app.test_client()
        client.put("/v1/groups/Group.ScopeA.Readers.Eligible", json={}, headers=admin)
        for number in range(60):
            user = f"u{number:02}"
            client.put(f"/v1/users/{user}", json={}, headers=admin)
            client.put(f"/v1/groups/Group.ScopeA.Readers.Eligible/members/{user}", headers=admin)
            body = {"package": "scope-a-readers", "subject": {"id": user}}
            assert client.post("/v1/requests", json=body, headers=admin).status_code == 201
        workers = [
            Worker(
                database.session,
                components(app).connectors,
                components(app).runtime,
                name=f"w{i}",
            )
            for i in range(2)
        ]
        ran = {worker.name: 0 for worker in workers}
        barrier = threading.Barrier(2)

        def drain(worker: Worker) -> None:
            barrier.wait()
            while (count := worker.run_jobs(now=clock(), limit=5)) > 0:
                ran[worker.name] += count

        threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with database.session() as session:
            jobs, total = JobService(session).list(limit=1000)
        grants = [job for job in jobs if job.kind == "grant"]
        assert len(grants) == 60 and sum(ran.values()) == total  # plus one notice per grant
        assert {(job.state, job.attempts) for job in jobs} == {("done", 1)}
        members = client.get(
            "/v1/groups/Group.ScopeA.Readers/members?page_size=100", headers=admin
        ).json
        assert len(members) == 60
        added = client.get(
            "/v1/audit?action=directory.member_added&object_id=Group.ScopeA.Readers&page_size=100",
            headers=admin,
        ).json
        assert len(added) == 60  # each membership written once
    finally:
        components(app).runtime.close()
        with database.engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
        database.dispose()
