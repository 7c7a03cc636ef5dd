"""Assignments: removal with reference counting, extension by the current rules."""

from __future__ import annotations

from policyd.rules import load_bundle
from tests.conftest import POLICIES


def grant(client, headers, package="scope-a-readers", **extra):
    response = client.post("/v1/requests", json={"package": package, **extra}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def members(client, admin, group):
    return [m["user_id"] for m in client.get(f"/v1/groups/{group}/members", headers=admin).json]


def test_holder_removes_access_and_membership_goes(client, token, admin, people):
    """Removing an assignment ends it and takes the person out of the directory group."""
    ada = token("ada")
    grant(client, ada)
    assignment = client.get("/v1/assignments", headers=ada).json[0]
    removed = client.delete(f"/v1/assignments/{assignment['id']}", headers=ada)
    assert removed.status_code == 200
    assert (removed.json["state"], removed.json["removed_at"]) == (
        "removed",
        "2026-01-05T09:00:00+00:00",
    )
    assert "ada" not in members(client, admin, "Group.ScopeA.Readers")
    again = client.delete(f"/v1/assignments/{assignment['id']}", headers=ada)
    assert again.status_code == 409


def test_others_cannot_remove_or_see_an_assignment(client, token, people):
    """Another user gets 404; an app gets 403 on removal."""
    grant(client, token("ada"))
    assignment = client.get("/v1/assignments", headers=token("ada")).json[0]
    url = f"/v1/assignments/{assignment['id']}"
    assert client.delete(url, headers=token("bob")).status_code == 404
    assert client.delete(url, headers=token("portal", "app")).status_code == 403


def test_overlapping_packages_keep_a_shared_group(client, token, admin, people, app, clock):
    """Ending one of two assignments that grant the same group leaves the membership."""
    files = {
        "extra.yaml": (
            "apiVersion: policyd/v1\npackage:\n  id: scope-a-extra\n  displayName: Extra\n"
            "  resources:\n    - {connector: directory, resource: 'group:Group.ScopeA.Readers'}\n"
            "  lifetime: {duration: P1D}\n"
            "  rules:\n    - {id: all, then: {decision: auto_approve}}\n"
        )
    }
    files.update(load_bundle(POLICIES).files)
    assert (
        client.post("/v1/policy-versions", json={"files": files}, headers=admin).status_code == 201
    )
    ada = token("ada")
    grant(client, ada)
    grant(client, ada, package="scope-a-extra")
    first = client.get("/v1/assignments?package=scope-a-readers", headers=ada).json[0]
    client.delete(f"/v1/assignments/{first['id']}", headers=ada)
    assert "ada" in members(client, admin, "Group.ScopeA.Readers")


def test_extension_is_decided_by_the_current_rules(client, token, people):
    """Extending asks the rules again; a package whose rule forbids extension gives 409."""
    sam = token("sam")
    request = grant(client, sam, package="sales-support", justification="launch")
    client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token("max"))
    client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token("olga"))
    assignment = client.get("/v1/assignments", headers=sam).json[0]
    extension = client.post(
        f"/v1/assignments/{assignment['id']}/extend", json={"justification": "more"}, headers=sam
    )
    assert extension.status_code == 201, extension.json
    assert extension.json["extends_assignment_id"] == assignment["id"]
    assert extension.json["state"] == "pending_approval"
    ada = token("ada")
    grant(client, ada)
    jit = client.get("/v1/assignments", headers=ada).json[0]
    refused = client.post(f"/v1/assignments/{jit['id']}/extend", json={}, headers=ada)
    assert refused.status_code == 409 and "does not allow extending" in refused.json["message"]


def test_list_filters_and_pagination(client, token, admin, people):
    """Assignments filter by subject, package, state and expiry, with pagination metadata."""
    grant(client, token("ada"))
    response = client.get(
        "/v1/assignments?state=active&expiring_before=2026-01-06T00:00:00Z&page_size=1",
        headers=admin,
    )
    assert [a["subject_id"] for a in response.json] == ["ada"]
    assert '"total": 1' in response.headers["X-Pagination"]
    late = client.get("/v1/assignments?expiring_before=2026-01-05T10:00:00Z", headers=admin)
    assert late.json == []
    naive = client.get("/v1/assignments?expiring_before=2026-01-06T00:00:00", headers=admin)
    assert naive.status_code == 422 and "query.expiring_before" in naive.json["errors"]
