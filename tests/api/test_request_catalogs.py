"""`?catalog=` on the request list and the approver inbox: it narrows what the caller sees."""

from __future__ import annotations

import json

import pytest

from tests.api.test_requests import file


@pytest.fixture
def filed(client, token, people) -> dict[str, str]:
    """Requests by bob and carol for Scope A readers (engineering, waiting for the others of
    the approver group), by ada (engineering, auto-approved) and by sam for Sales Support
    (sales, waiting for max): request id by requester."""
    ids = {}
    for who, package, extra in [
        ("bob", "scope-a-readers", {}),
        ("carol", "scope-a-readers", {}),
        ("ada", "scope-a-readers", {}),
        ("sam", "sales-support", {"justification": "launch"}),
    ]:
        response = file(client, token(who), package, **extra)
        assert response.status_code == 201, response.json
        ids[who] = response.json["id"]
    return ids


def listed(client, headers, query: str) -> list[str]:
    response = client.get(f"/v1/requests?{query}", headers=headers)
    assert response.status_code == 200, response.json
    return [request["id"] for request in response.json]


def test_an_admin_lists_one_catalogs_requests(client, admin, filed):
    """Only the requests for the catalog's packages, newest first as the whole list."""
    everything = listed(client, admin, "")
    engineering = listed(client, admin, "catalog=engineering")
    assert set(engineering) == {filed["bob"], filed["carol"], filed["ada"]}
    assert engineering == [i for i in everything if i in engineering]
    assert listed(client, admin, "catalog=sales") == [filed["sam"]]
    assert listed(client, admin, "catalog=finance") == []


def test_the_inbox_by_catalog(client, token, filed):
    """ada approves bob's and carol's requests: her inbox of engineering holds them, of sales
    nothing; max's inbox of sales holds sam's."""
    ada, max_ = token("ada"), token("max")
    inbox = listed(client, ada, "approver=me&catalog=engineering")
    assert set(inbox) == {filed["bob"], filed["carol"]}
    assert listed(client, ada, "approver=me&catalog=sales") == []
    assert listed(client, max_, "approver=me&catalog=sales") == [filed["sam"]]


def test_a_user_filters_their_own_requests_by_a_catalog_they_do_not_own(client, token, filed):
    """The filter narrows what a user sees (no 403, unlike assignments by catalog)."""
    assert listed(client, token("sam"), "catalog=sales") == [filed["sam"]]
    assert listed(client, token("sam"), "catalog=engineering") == []


def test_a_cursor_walk_of_a_catalog_lists_each_request_once(client, admin, filed):
    """Keyset pages of one catalog, one request each, give the numbered list's order."""
    whole = listed(client, admin, "catalog=engineering")
    seen, after = [], ""
    while after is not None:
        response = client.get(
            f"/v1/requests?catalog=engineering&page_size=1&after={after}", headers=admin
        )
        seen += [request["id"] for request in response.json]
        after = json.loads(response.headers["X-Pagination"]).get("next_after")
    assert seen == whole and len(seen) == 3


def test_an_unknown_catalog_is_a_422_naming_it(client, admin, filed):
    response = client.get("/v1/requests?catalog=nope", headers=admin)
    assert (response.status_code, list(response.json["errors"])) == (422, ["catalog"])
