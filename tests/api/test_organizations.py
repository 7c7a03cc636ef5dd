"""Connected organisations over HTTP: proposed by a guest's request, listed by state,
configured and removed by an admin; bad input is a 4xx naming the field."""

from __future__ import annotations

import pytest

NORTHWIND = "/v1/organizations/northwind.example"


@pytest.fixture
def proposed(client, token, admin, people):
    """raj, a guest of northwind.example (a domain no organisation owns), requested Merger
    collaboration: the organisation is proposed."""
    body = {"email": "raj@northwind.example", "type": "guest"}
    assert client.put("/v1/users/raj", json=body, headers=admin).status_code == 200
    filed = client.post(
        "/v1/requests", json={"package": "merger-collaboration"}, headers=token("raj")
    )
    assert filed.status_code == 201, filed.json
    return filed.json


def test_an_admin_lists_proposed_organizations_and_configures_one(client, token, admin, proposed):
    """GET ?state=proposed lists the proposed one; PUT configures it with sponsors and the
    next guest's request waits for them."""
    client.put("/v1/organizations/contoso", json={"display_name": "Contoso"}, headers=admin)
    listed = client.get("/v1/organizations?state=proposed", headers=admin)
    assert [o["id"] for o in listed.json] == ["northwind.example"]
    assert listed.json[0]["state"] == "proposed"
    body = {"state": "configured", "display_name": "Northwind", "internal_sponsors": ["olga"]}
    configured = client.put(NORTHWIND, json=body, headers=admin)
    assert configured.status_code == 200, configured.json
    assert (configured.json["state"], configured.json["domains"]) == (
        "configured",
        ["northwind.example"],
    )
    assert client.get("/v1/organizations?state=proposed", headers=admin).json == []
    client.put("/v1/users/rey", json={"email": "rey@northwind.example", "type": "guest"},
               headers=admin)  # fmt: skip
    filed = client.post(
        "/v1/requests", json={"package": "merger-collaboration"}, headers=token("rey")
    ).json
    assert filed["stages"][0]["approvers"] == ["olga"]
    approved = client.post(f"/v1/requests/{filed['id']}/approve", json={}, headers=token("olga"))
    assert approved.status_code == 200, approved.json


def test_deleting_an_organization_ends_its_guests_access(client, token, admin, people):
    """fab (a Fabrikam guest, auto-approved) loses Merger collaboration when Fabrikam is
    removed; the answer counts what ended; the organisation is gone (404)."""
    body = {"display_name": "Fabrikam", "domains": ["fabrikam.com"]}
    assert client.put("/v1/organizations/fabrikam", json=body, headers=admin).status_code == 200
    filed = client.post(
        "/v1/requests", json={"package": "merger-collaboration"}, headers=token("fab")
    )
    assert filed.json["state"] == "delivered"
    removed = client.delete("/v1/organizations/fabrikam", headers=admin)
    assert removed.status_code == 200, removed.json
    assert (removed.json["guests"], removed.json["assignments_ended"]) == (1, 1)
    held = client.get("/v1/assignments?subject=fab", headers=admin).json
    assert [a["state"] for a in held] == ["removed"]
    members = client.get("/v1/groups/Merger.Collaboration/members", headers=admin).json
    assert members == []
    gone = client.get("/v1/organizations/fabrikam", headers=admin)
    assert (gone.status_code, list(gone.json["errors"])) == (404, ["id"])
    again = client.delete("/v1/organizations/fabrikam", headers=admin)
    assert (again.status_code, list(again.json["errors"])) == (404, ["id"])
    records = client.get("/v1/audit?action=directory.organization_removed", headers=admin).json
    assert [r["object_id"] for r in records] == ["fabrikam"]


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("get", "/v1/organizations?state=removed", None, "query.state"),
        ("get", "/v1/organizations?color=red", None, "query.color"),
        ("put", NORTHWIND, {"state": "removed"}, "state"),
        (
            "put",
            NORTHWIND,
            {"state": "configured", "internal_sponsors": "olga"},
            "internal_sponsors",
        ),
        ("put", NORTHWIND, {"display_name": "N", "domains": ["x" * 254]}, "domains.0"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, admin, proposed, method, url, body, field):
    response = getattr(client, method)(url, json=body, headers=admin)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"]


def test_a_domain_another_organization_owns_is_a_409_naming_domains(client, admin, proposed):
    """Configuring a second organisation with the proposed one's domain is refused."""
    body = {"display_name": "N2", "domains": ["northwind.example"]}
    response = client.put("/v1/organizations/n2", json=body, headers=admin)
    assert (response.status_code, list(response.json["errors"])) == (409, ["domains"])


def test_only_admins_configure_or_remove(client, token, proposed):
    """A user, an app and an auditor get 403 on PUT and DELETE; the auditor may list."""
    for role in ("user", "app", "auditor"):
        headers = token(f"u-{role}", role)
        assert client.delete(NORTHWIND, headers=headers).status_code == 403
        assert client.put(NORTHWIND, json={}, headers=headers).status_code == 403
    auditor = token("aud", "auditor")
    assert client.get("/v1/organizations?state=proposed", headers=auditor).status_code == 200


def test_the_openapi_document_shows_the_state_filter_and_the_removal(client):
    """GET /v1/organizations documents `state`; DELETE /v1/organizations/{org_id} its answer
    and the one error shape (`default`, as every operation); GET /v1/requests `catalog`."""
    paths = client.get("/openapi.json").json["paths"]
    listed = {p["name"] for p in paths["/v1/organizations"]["get"]["parameters"]}
    assert "state" in listed
    removal = paths["/v1/organizations/{org_id}"]["delete"]
    assert set(removal["responses"]) == {"200", "default"}
    assert removal["responses"]["200"]["content"]["application/json"]["schema"]
    requests = {p["name"] for p in paths["/v1/requests"]["get"]["parameters"]}
    assert "catalog" in requests
