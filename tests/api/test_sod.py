"""Separation of duties over HTTP: a refused approval is a 409 in the error shape; the report."""

from __future__ import annotations

import json

import pytest

from policyd.rules import load_bundle
from tests.conftest import POLICIES

DECLARED = "  incompatibleWith: [payments-entry]\n"


@pytest.fixture
def finance(client, admin):
    """pat, an AP clerk managed by max; carol is a controller (owner of quarter-end close)."""
    users = {
        "max": {"department": "Finance"},  # first: a manager must be in the directory
        "pat": {"department": "Finance", "job_title": "AP Clerk", "manager_id": "max"},
        "carol": {"department": "Finance"},
    }
    for user_id, body in users.items():
        assert client.put(f"/v1/users/{user_id}", json=body, headers=admin).status_code == 200
    assert client.put("/v1/groups/Finance.Controllers", json={}, headers=admin).status_code == 200
    member = client.put("/v1/groups/Finance.Controllers/members/carol", headers=admin)
    assert member.status_code == 204


def publish_without_the_incompatibility(client, admin) -> str:
    """Publish the example policies minus quarter-end close's incompatibleWith; returns the
    id of the version that declares it (the one active before)."""
    declaring = [v["id"] for v in client.get("/v1/policy-versions", headers=admin).json]
    files = dict(load_bundle(POLICIES).files)
    assert DECLARED in files["quarter-end-finance.yaml"]
    files["quarter-end-finance.yaml"] = files["quarter-end-finance.yaml"].replace(DECLARED, "")
    published = client.post(
        "/v1/policy-versions", json={"files": files, "message": "before SoD"}, headers=admin
    )
    assert published.status_code == 201, published.json
    return declaring[0]


def file(client, headers, package):
    response = client.post("/v1/requests", json={"package": package}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def both_pending(client, token, admin):
    """Two pending requests of pat for incompatible packages, filed before the rule."""
    declaring = publish_without_the_incompatibility(client, admin)
    pat = token("pat")
    entry = file(client, pat, "payments-entry")
    close = file(client, pat, "quarter-end-close")
    assert entry["state"] == close["state"] == "pending_approval"
    activated = client.post(f"/v1/policy-versions/{declaring}/activate", headers=admin)
    assert activated.status_code == 200
    return entry, close


def test_the_second_approval_is_refused_with_409_naming_the_first(client, token, admin, finance):
    """Both pending when the rule is published: the first approval delivers; the second gets
    409 in the error shape naming the first request and its package, and is denied."""
    entry, close = both_pending(client, token, admin)
    first = client.post(f"/v1/requests/{entry['id']}/approve", json={}, headers=token("max"))
    assert first.status_code == 200 and first.json["state"] == "delivered"
    second = client.post(f"/v1/requests/{close['id']}/approve", json={}, headers=token("carol"))
    assert second.status_code == 409
    body = second.json
    assert (body["code"], body["status"]) == (409, "Conflict")
    assert f"(request {entry['id']})" in body["message"]
    assert "'Payments entry' (payments-entry)" in body["message"]
    [conflict] = body["errors"]["package"]
    assert conflict.startswith("holds 'Payments entry' (payments-entry) through assignment ")
    assert conflict.endswith(
        f"(request {entry['id']}), which is incompatible with 'Quarter-end close'"
    )
    refused = client.get(f"/v1/requests/{close['id']}", headers=admin).json
    assert (refused["state"], refused["rule"]) == ("denied", "incompatible:payments-entry")
    assert refused["approvals"] == []


def test_the_report_lists_holders_of_incompatible_packages(client, token, admin, finance):
    """Access granted before the rule shows up, paginated, for admins and auditors."""
    active = publish_without_the_incompatibility(client, admin)
    entry = file(client, token("pat"), "payments-entry")
    close = file(client, token("pat"), "quarter-end-close")
    client.post(f"/v1/requests/{entry['id']}/approve", json={}, headers=token("max"))
    client.post(f"/v1/requests/{close['id']}/approve", json={}, headers=token("carol"))
    client.post(f"/v1/policy-versions/{active}/activate", headers=admin)
    response = client.get("/v1/sod-violations", headers=token("aud", "auditor"))
    assert response.status_code == 200, response.json
    assert json.loads(response.headers["X-Pagination"])["total"] == 1
    [row] = response.json
    assert (row["subject_id"], row["kind"], row["rule"], row["version"]) == (
        "pat",
        "package",
        f"incompatible:{row['conflicts_with']}",
        active,
    )
    assert {row["package"], row["conflicts_with"]} == {"payments-entry", "quarter-end-close"}
    assert row["assignment_id"] and row["other_assignment_id"]


def test_the_report_filters_by_subject_and_names_a_bad_filter(client, admin):
    """?subject= narrows the list; an empty one is a 422 naming query.subject."""
    assert client.get("/v1/sod-violations?subject=nobody", headers=admin).json == []
    response = client.get("/v1/sod-violations?subject=", headers=admin)
    assert response.status_code == 422
    assert "query.subject" in response.json["errors"]


def test_users_cannot_read_the_report(client, token):
    """403 in the error shape for the user role."""
    response = client.get("/v1/sod-violations", headers=token("pat"))
    assert response.status_code == 403 and response.json["code"] == 403


def test_the_report_is_in_the_openapi_document_with_its_schema(client):
    """GET /v1/sod-violations documents a paginated list of violations."""
    spec = client.get("/openapi.json").json
    answer = spec["paths"]["/v1/sod-violations"]["get"]["responses"]["200"]
    items = answer["content"]["application/json"]["schema"]["items"]["$ref"]
    schema = spec["components"]["schemas"][items.rsplit("/", 1)[1]]
    assert {"subject_id", "package", "conflicts_with", "rule", "version"} <= set(
        schema["properties"]
    )
    assert "X-Pagination" in answer["headers"]
