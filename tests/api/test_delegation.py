"""Delegated administration over HTTP: the 403 and 422 answers, removal and direct assignment by
a catalog owner, the catalogs list (what an owner sees: tests/services/test_delegation.py)."""

from __future__ import annotations

import pytest

OWNERS = "Engineering.CatalogOwners"  # owns the example catalog `engineering`


@pytest.fixture
def held(client, token, admin, people) -> dict[str, str]:
    """carol owns engineering; ada holds scope-a-readers (engineering) and sam sales-support
    (sales), both delivered: {package: assignment id}."""
    client.put(f"/v1/groups/{OWNERS}", json={}, headers=admin)
    assert client.put(f"/v1/groups/{OWNERS}/members/carol", headers=admin).status_code == 204
    body = {"package": "scope-a-readers", "subject": {"id": "ada"}}
    assert client.post("/v1/requests", json=body, headers=token("ada")).status_code == 201
    body = {"package": "sales-support", "subject": {"id": "sam"}, "justification": "launch"}
    request = client.post("/v1/requests", json=body, headers=token("sam")).json
    for approver in ("max", "olga"):
        url = f"/v1/requests/{request['id']}/approve"
        assert client.post(url, json={}, headers=token(approver)).status_code == 200
    listed = client.get("/v1/assignments", headers=admin).json
    return {a["package"]: a["id"] for a in listed}


def test_a_catalog_owner_gets_403_for_another_catalog(client, token, held):
    """Listing another catalog is 403 naming `catalog`; removing its assignment is 403
    naming `id`; neither shows its data."""
    carol = token("carol")
    listed = client.get("/v1/assignments?catalog=sales", headers=carol)
    assert listed.status_code == 403
    assert listed.json["errors"] == {"catalog": ["'carol' does not own catalog 'sales'"]}
    removed = client.delete(f"/v1/assignments/{held['sales-support']}", headers=carol)
    assert removed.status_code == 403 and list(removed.json["errors"]) == ["id"]
    assert "sam" not in removed.text and "sales" not in removed.json["message"]


def test_a_catalog_owner_removes_an_assignment_in_their_catalog(client, token, admin, held):
    """carol ends ada's access; the audit names carol and the rule version."""
    assignment = held["scope-a-readers"]
    removed = client.delete(f"/v1/assignments/{assignment}", headers=token("carol"))
    assert removed.status_code == 200 and removed.json["state"] in ("expiring", "removed")
    url = f"/v1/audit?object_id={assignment}&action=assignment.removal_requested"
    (record,) = client.get(url, headers=admin).json
    assert (record["actor"], record["version"]) == ("carol", removed.json["version"])


def test_an_unknown_catalog_is_422_naming_it(client, admin, held):
    """A catalog the active version does not declare is named in a 422."""
    response = client.get("/v1/assignments?catalog=nope", headers=admin)
    assert response.status_code == 422 and "catalog" in response.json["errors"]


def test_a_catalog_owner_assigns_directly_within_the_policy(client, token, held):
    """carol gives bob Scope A for 4 hours (201); 9 hours, past the package's PT8H, is a 422
    naming `duration`; Sales Support, outside her catalog, a 403 naming `package`."""
    carol = token("carol")
    body = {"package": "scope-a-readers", "subject": "bob", "duration": "PT4H"}
    created = client.post("/v1/assignments", json=body, headers=carol)
    assert created.status_code == 201 and created.json["subject_id"] == "bob"
    too_long = client.post("/v1/assignments", json={**body, "duration": "PT9H"}, headers=carol)
    assert too_long.status_code == 422 and list(too_long.json["errors"]) == ["duration"]
    outside = client.post(
        "/v1/assignments", json={**body, "package": "sales-support"}, headers=carol
    )
    assert outside.status_code == 403 and list(outside.json["errors"]) == ["package"]


def test_a_direct_assignment_with_a_missing_field_is_422_naming_it(client, admin, held):
    """The body's required fields are named when absent."""
    response = client.post("/v1/assignments", json={"package": "scope-a-readers"}, headers=admin)
    assert response.status_code == 422
    assert {"subject", "duration"} <= set(response.json["errors"])


def test_a_person_lists_the_catalogs_they_own_and_an_admin_all(client, token, admin, held):
    """carol sees engineering with its package; ada, who owns none, an empty list; an admin
    every catalog of the active version."""
    (mine,) = client.get("/v1/catalogs", headers=token("carol")).json
    assert (mine["id"], mine["packages"]) == ("engineering", ["scope-a-readers"])
    assert mine["owners"] == ["group:Engineering.CatalogOwners"]
    assert client.get("/v1/catalogs", headers=token("ada")).json == []
    every = client.get("/v1/catalogs", headers=admin).json
    assert [c["id"] for c in every] == ["engineering", "finance", "integration", "sales"]
