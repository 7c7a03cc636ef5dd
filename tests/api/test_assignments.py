"""Assignments: removal with reference counting, extension by the current rules."""

from __future__ import annotations

import json


def grant(client, headers, package="scope-a-readers", **extra):
    response = client.post("/v1/requests", json={"package": package, **extra}, headers=headers)
    assert response.status_code == 201, response.json
    return response.json


def members(client, admin, group):
    return [m["user_id"] for m in client.get(f"/v1/groups/{group}/members", headers=admin).json]


def test_others_cannot_remove_or_see_an_assignment(client, token, people):
    """Another user gets 404; an app gets 403 on removal."""
    grant(client, token("ada"))
    assignment = client.get("/v1/assignments", headers=token("ada")).json[0]
    url = f"/v1/assignments/{assignment['id']}"
    assert client.delete(url, headers=token("bob")).status_code == 404
    assert client.delete(url, headers=token("portal", "app")).status_code == 403


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


def test_expiring_before_lists_the_latest_expiry_first(client, token, admin, people, clock):
    """Filtered by expiring_before, assignments list by expiry, latest first, not by start:
    a cursor walk reads one range of the expiry index."""
    grant(client, token("ada"), duration="PT8H")
    clock.advance(minutes=1)
    body = {"package": "scope-a-readers", "subject": "sam", "duration": "PT1H"}
    response = client.post("/v1/assignments", json=body, headers=admin)
    assert response.status_code == 201, response.json
    url = "/v1/assignments?expiring_before=2026-02-01T00:00:00Z&page_size=1&after="
    first = client.get(url, headers=admin)
    cursor = json.loads(first.headers["X-Pagination"])["next_after"]
    second = client.get(f"{url}{cursor}", headers=admin)
    assert [a["subject_id"] for a in first.json + second.json] == ["ada", "sam"]
    assert "next_after" not in json.loads(second.headers.get("X-Pagination", "{}"))
    newest = client.get("/v1/assignments", headers=admin).json
    assert [a["subject_id"] for a in newest] == ["sam", "ada"]
