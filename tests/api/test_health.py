"""Liveness and readiness of the HTTP app."""

from __future__ import annotations

from policyd.api import create_app
from tests.conftest import POLICIES


def test_ready_with_the_example_policies(example_bundle):
    """/readyz names the active rule version once the policies loaded."""
    client = create_app({"POLICYD_POLICIES": str(POLICIES)}).test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json == {"status": "ready", "version": example_bundle.version.id}


def test_not_ready_without_valid_policies(tmp_path):
    """With no valid bundle the app is alive but answers 503 on /readyz."""
    (tmp_path / "broken.yaml").write_text("apiVersion: policyd/v1\n")
    client = create_app({"POLICYD_POLICIES": str(tmp_path)}).test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
