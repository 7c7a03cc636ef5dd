"""POST /v1/auto-assignments/preview and the origin of assignments, over HTTP."""

from __future__ import annotations

from policyd.api.context import components
from policyd.rules import load_bundle
from tests.conftest import POLICIES, rule_file

SUPPORT_CRM = rule_file(
    """
    apiVersion: policyd/v1
    package:
      id: support-crm
      displayName: Support CRM
      rules:
        - {id: anyone, then: {decision: auto_approve, lifetime: {duration: P1D}}}
      autoAssign:
        when: {subject.department: Sales}
        grace: P3D
    """
)


def test_the_preview_counts_what_candidate_files_would_assign(client, admin, people):
    """max and sam are in Sales: both would get it; nothing is written."""
    response = client.post(
        "/v1/auto-assignments/preview",
        json={"files": {"support-crm.yaml": SUPPORT_CRM}},
        headers=admin,
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["would_add"], body["would_remove"]) == (2, 0)
    assert body["packages"] == [
        {
            "package": "support-crm",
            "would_add": 2,
            "would_remove": 0,
            "unchanged": 0,
            "held_otherwise": 0,
            "grace": "P3D",
        }
    ]
    assert body["users"] == len(people)
    assert client.get("/v1/assignments", headers=admin).json == []


def test_the_active_version_is_previewed_when_no_candidate_is_given(client, token, people):
    response = client.post("/v1/auto-assignments/preview", json={}, headers=token("aud", "auditor"))
    assert response.status_code == 200
    assert response.json["packages"] == [] and response.json["would_add"] == 0


def test_bad_candidates_are_refused_naming_the_field(client, admin):
    both = client.post(
        "/v1/auto-assignments/preview",
        json={"version": "abc", "files": {"a.yaml": "x"}},
        headers=admin,
    )
    assert both.status_code == 422 and "version" in both.json["errors"]
    unknown = client.post("/v1/auto-assignments/preview", json={"version": "nope"}, headers=admin)
    assert unknown.status_code == 404
    broken = SUPPORT_CRM.replace("grace: P3D", "grace: soon")
    invalid = client.post(
        "/v1/auto-assignments/preview", json={"files": {"c.yaml": broken}}, headers=admin
    )
    assert invalid.status_code == 422 and "files" in invalid.json["errors"]


def test_requested_assignments_show_their_origin(client, admin, people):
    body = {"package": "scope-a-readers", "subject": {"id": "ada"}}
    assert client.post("/v1/requests", json=body, headers=admin).status_code == 201
    (assignment,) = client.get("/v1/assignments", headers=admin).json
    assert assignment["origin"] == "request"


def test_extending_auto_assigned_access_in_its_grace_period_is_a_409_naming_origin(
    app, client, admin, token, people, clock
):
    """sam left Sales and is in the grace period; POST .../extend answers 409 on `origin`."""
    files = {**load_bundle(POLICIES).files, "support-crm.yaml": SUPPORT_CRM}
    published = client.post("/v1/policy-versions", json={"files": files}, headers=admin)
    assert published.status_code == 201, published.json
    worker = components(app).worker
    worker.sweep(now=clock())
    body = {"department": "Engineering"}
    assert client.put("/v1/users/sam", json=body, headers=admin).status_code == 200
    assert worker.sweep(now=clock())["auto_graced"] == 1
    (held,) = client.get("/v1/assignments?subject=sam&package=support-crm", headers=admin).json
    assert (held["origin"], held["expires_at"] is not None) == ("auto", True)
    response = client.post(f"/v1/assignments/{held['id']}/extend", json={}, headers=token("sam"))
    assert response.status_code == 409, response.json
    assert "origin" in response.json["errors"]
