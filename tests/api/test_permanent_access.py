"""Permanent access (`lifetime: {permanent: true}`): stored with no expiry, never expired,
never reminded of an end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from policyd.api import create_app
from policyd.api.context import components
from policyd.store.models import Base
from tests.conftest import Clock

PACKAGE = """apiVersion: policyd/v1
package:
  id: {id}
  displayName: {id}
  resources:
    - {{connector: directory, resource: "group:{group}"}}
  lifetime: {lifetime}
  rules:
    - {{id: everyone, then: {{decision: auto_approve}}}}
"""


@pytest.fixture
def app(database_url: str, clock: Clock, tmp_path) -> Iterator[Flask]:
    """Packages `newsletter` (permanent) and `brief` (P2D), reminders a day before an end."""
    policies = tmp_path / "policies"
    policies.mkdir()
    for package, group, lifetime in [
        ("newsletter", "Newsletter", "{permanent: true}"),
        ("brief", "Brief", "{duration: P2D}"),
    ]:
        text = PACKAGE.format(id=package, group=group, lifetime=lifetime)
        (policies / f"{package}.yaml").write_text(text)
    application = create_app(
        {
            "TESTING": True,
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": str(policies),
            "POLICYD_CLOCK": clock,
            "POLICYD_AUTO_UPGRADE": True,
            "POLICYD_REMINDERS": "P1D",
        }
    )
    yield application
    database = components(application).database
    components(application).decision_log.close()
    components(application).runtime.close()
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    database.dispose()


def test_permanent_access_is_never_expired_nor_reminded(app, client, admin, clock):
    """Over ten years of worker sweeps, the two-day assignment is reminded once and removed;
    the permanent one keeps expires_at null, stays active and gets no reminder."""
    assert client.put("/v1/users/ada", json={"email": "ada@contoso.com"}, headers=admin)
    made = {}
    for package in ("newsletter", "brief"):
        body = {"package": package, "subject": {"id": "ada"}}
        response = client.post("/v1/requests", json=body, headers=admin)
        assert response.status_code == 201, response.json
        made[package] = response.json
    assert made["newsletter"]["expires_at"] is None
    body = {"package": "newsletter", "subject": {"id": "ada"}}
    decision = client.post("/v1/decisions", json=body, headers=admin).json
    assert decision["lifetime"]["expires_at"] is None
    worker = components(app).worker
    worker.sweep(now=clock())
    clock.advance(days=1, minutes=1)  # a day before the brief access ends
    assert worker.sweep(now=clock())["reminders"] == 1
    for _ in range(10):
        clock.advance(days=365)
        assert worker.sweep(now=clock())["reminders"] == 0
    assignments = client.get("/v1/assignments?subject=ada", headers=admin).json
    by_package = {a["package"]: a for a in assignments}
    assert by_package["newsletter"]["state"] == "active"
    assert by_package["newsletter"]["expires_at"] is None
    assert by_package["brief"]["state"] == "removed"
    members = client.get("/v1/groups/Newsletter/members", headers=admin).json
    assert [m["user_id"] for m in members] == ["ada"]
    reminders = [
        job
        for job in client.get("/v1/jobs?kind=notify&page_size=100", headers=admin).json
        if job["role"].startswith("before:")
    ]
    assert [job["assignment_id"] for job in reminders] == [by_package["brief"]["id"]]
