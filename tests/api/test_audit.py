"""Every state change leaves an audit record: who, when, what, before/after, rule version."""

from __future__ import annotations


def actions(client, admin, **query):
    args = "&".join(f"{k}={v}" for k, v in query.items())
    return [
        (r["action"], r["actor"])
        for r in client.get(f"/v1/audit?page_size=100&{args}", headers=admin).json
    ]


def test_a_request_lifecycle_is_audited_with_actor_and_version(client, token, admin, people):
    """Created, pending, approved, delivering, delivered by the worker, removed: each audited."""
    request = client.post(
        "/v1/requests", json={"package": "scope-a-readers"}, headers=token("bob")
    ).json
    client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token("carol"))
    assert actions(client, admin, object_id=request["id"]) == [
        ("request.created", "bob"),
        ("request.pending_approval", "bob"),
        ("request.approved", "carol"),
        ("request.delivering", "carol"),
        ("request.delivered", "worker"),
    ]
    records = client.get(f"/v1/audit?object_id={request['id']}", headers=admin).json
    assert {r["version"] for r in records} == {request["version"]}
    assert records[2]["before"]["state"] == "pending_approval"
    assert records[2]["after"]["state"] == "approved"
    assert records[2]["at"] == "2026-01-05T09:00:00+00:00"
    assignment = client.get("/v1/assignments?subject=bob", headers=admin).json[0]
    client.delete(f"/v1/assignments/{assignment['id']}", headers=admin)
    assert actions(client, admin, object_id=assignment["id"]) == [
        ("assignment.created", "carol"),
        ("assignment.active", "worker"),
        ("assignment.removal_requested", "root"),
        ("assignment.removed", "worker"),
    ]


def test_directory_tokens_and_versions_are_audited(client, token, admin):
    """Directory changes, token creation/revocation and version activation are audited."""
    client.put("/v1/users/zed", json={"department": "Ops"}, headers=admin)
    client.put("/v1/users/zed", json={"department": "Sales"}, headers=admin)
    changes = client.get("/v1/audit?object_id=zed", headers=admin).json
    assert [c["action"] for c in changes] == ["directory.user_created", "directory.user_updated"]
    assert (changes[1]["before"]["department"], changes[1]["after"]["department"]) == (
        "Ops",
        "Sales",
    )
    created = client.post("/v1/tokens", json={"principal": "ci", "role": "app"}, headers=admin)
    assert created.status_code == 201 and created.json["token"].startswith("pd_")
    client.delete(f"/v1/tokens/{created.json['id']}", headers=admin)
    assert actions(client, admin, object_id=created.json["id"]) == [
        ("token.created", "root"),
        ("token.revoked", "root"),
    ]
    revoked = {"Authorization": f"Bearer {created.json['token']}"}
    assert client.get("/v1/decisions", headers=revoked).status_code == 401
    first = actions(client, admin, action="version.activated")
    assert first == [("version.activated", "system")]


def test_expired_tokens_stop_working(client, admin, clock):
    """A token with expires_in stops authenticating once that time has passed."""
    created = client.post(
        "/v1/tokens", json={"principal": "tmp", "role": "user", "expires_in": "PT1H"}, headers=admin
    ).json
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert client.get("/v1/decisions", headers=headers).status_code == 200
    clock.advance(hours=1)
    assert client.get("/v1/decisions", headers=headers).status_code == 401
    bad = client.post("/v1/tokens", json={"principal": "x", "role": "god"}, headers=admin)
    assert bad.status_code == 422 and "role" in bad.json["errors"]


def test_a_change_carries_the_callers_request_id(client, admin):
    """A change made with X-Request-ID: abc has an audit record with request_id abc, inside
    its hashed content."""
    response = client.put("/v1/users/zed", json={}, headers={**admin, "X-Request-ID": "abc"})
    assert response.status_code == 200
    [record] = client.get("/v1/audit?object_id=zed", headers=admin).json
    assert record["request_id"] == "abc"
    assert len(record["hash"]) == 64 and len(record["prev_hash"]) == 64


def test_the_audit_trail_lists_what_one_request_changed(client, admin):
    """?request_id= lists the records written during that HTTP request, and only those."""
    client.put("/v1/users/zed", json={}, headers={**admin, "X-Request-ID": "r-1"})
    client.put("/v1/users/zoe", json={}, headers={**admin, "X-Request-ID": "r-2"})
    records = client.get("/v1/audit?request_id=r-2", headers=admin).json
    assert [(r["object_id"], r["request_id"]) for r in records] == [("zoe", "r-2")]
