"""POST /v1/auto-assignments/preview and the origin of assignments, over HTTP."""

from __future__ import annotations

from tests.conftest import rule_file

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
