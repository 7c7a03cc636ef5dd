"""Liveness, readiness and metrics need no token; everything else does."""

from __future__ import annotations

from policyd.api import create_app
from policyd.api.context import components


def test_ready_with_the_example_policies(client, app):
    """/readyz names the active rule version once the policies are published."""
    assert client.get("/healthz").json == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert response.json["version"] == components(app).runtime.active.version


def test_not_ready_without_a_valid_policy_version(tmp_path):
    """With no valid bundle ever published the app is alive but answers 503 on /readyz."""
    (tmp_path / "broken.yaml").write_text("apiVersion: policyd/v1\n")
    app = create_app(
        {
            "POLICYD_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "POLICYD_POLICIES": str(tmp_path),
        }
    )
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    components(app).database.dispose()


def test_metrics_count_decisions_by_outcome(client, admin):
    """/metrics exposes decisions by outcome and request latency."""
    body = {"package": "scope-a-readers", "subject": {"id": "ghost"}}
    client.post("/v1/decisions", json=body, headers=admin)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'policyd_decisions_total{outcome="require_approval"} 1.0' in text
    assert "policyd_request_seconds_bucket" in text


def test_api_calls_need_a_token(client):
    """Without, or with a bad, bearer token every API call is 401 with a JSON body."""
    for headers in ({}, {"Authorization": "Bearer pd_wrong"}, {"Authorization": "Basic x"}):
        response = client.get("/v1/decisions", headers=headers)
        assert response.status_code == 401
        assert response.json["code"] == 401 and response.json["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_openapi_document_is_served(client):
    """/openapi.json documents every resource and the bearer scheme."""
    spec = client.get("/openapi.json").json
    assert {"/v1/decisions", "/v1/requests", "/v1/policy-versions", "/v1/audit"} <= set(
        spec["paths"]
    )
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_metrics_add_up_across_worker_processes(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR (gunicorn), /metrics sums what every process counted."""
    import os
    import subprocess
    import sys

    from tests.conftest import POLICIES

    script = f"""
from policyd.api import create_app
from policyd.api.context import components
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from datetime import UTC, datetime
apps = [create_app({{"POLICYD_DATABASE_URL": "sqlite:///{tmp_path}/db.sqlite",
                     "POLICYD_POLICIES": "{POLICIES}"}}) for _ in range(2)]
with components(apps[0]).database.session() as session:
    _, token = TokenService(session).create(SYSTEM, "root", "admin", now=datetime.now(UTC))
body = {{"package": "scope-a-readers", "subject": {{"id": "x"}}}}
headers = {{"Authorization": "Bearer " + token}}
for app in apps:
    app.test_client().post("/v1/decisions", json=body, headers=headers)
print(apps[0].test_client().get("/metrics").get_data(as_text=True))
"""
    (tmp_path / "prom").mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert 'policyd_decisions_total{outcome="require_approval"} 2.0' in result.stdout
