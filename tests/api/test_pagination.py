"""List pages: numbered pages carry the next cursor; cursor pages (`after`) carry no total."""

from __future__ import annotations

import json

import pytest


def page(client, admin, url):
    response = client.get(url, headers=admin)
    assert response.status_code == 200, response.json
    return response.json, json.loads(response.headers["X-Pagination"])


@pytest.fixture
def changes(client, admin):
    """Fourteen users written, so fourteen audit records, and their record ids in list order."""
    for n in range(14):
        assert client.put(f"/v1/users/u{n:02d}", json={}, headers=admin).status_code == 200
    records, _ = page(client, admin, "/v1/audit?page_size=100&action=directory.user_created")
    return [r["id"] for r in records]


def test_a_cursor_walk_lists_every_record_once(client, admin, changes):
    """Starting with `after=` and following next_after gives the same records in the same
    order as the numbered pages; cursor pages hold no total and the last no next_after."""
    seen, after, headers = [], "", []
    while after is not None:
        records, meta = page(
            client, admin, f"/v1/audit?action=directory.user_created&page_size=5&after={after}"
        )
        seen += [r["id"] for r in records]
        headers.append(meta)
        after = meta.get("next_after")
    assert seen == changes
    assert all("total" not in meta for meta in headers) and len(headers) == 3


def test_a_cursor_walk_lists_every_user_once_in_id_order(client, admin, changes):
    """Users page by cursor too: pages of five from `after=`, in id order, deleted ones left out."""
    assert client.delete("/v1/users/u03", headers=admin).status_code == 204
    seen, after = [], ""
    while after is not None:
        users, meta = page(client, admin, f"/v1/users?page_size=5&after={after}")
        seen += [u["id"] for u in users]
        assert "total" not in meta
        after = meta.get("next_after")
    assert seen == sorted(f"u{n:02d}" for n in range(14) if n != 3)


def test_a_numbered_page_hands_over_to_the_cursor(client, admin, changes):
    """Page 2's next_after continues at the first record of page 3."""
    _, meta = page(client, admin, "/v1/audit?action=directory.user_created&page_size=5&page=2")
    assert (meta["total"], meta["page"]) == (14, 2)
    records, _ = page(
        client,
        admin,
        f"/v1/audit?action=directory.user_created&page_size=5&after={meta['next_after']}",
    )
    assert [r["id"] for r in records] == changes[10:]


def test_the_last_numbered_page_has_no_cursor(client, admin, changes):
    """No next_after where there is no next page."""
    _, meta = page(client, admin, "/v1/audit?action=directory.user_created&page_size=5&page=3")
    assert "next_after" not in meta


@pytest.mark.parametrize(
    "url",
    ["/v1/assignments", "/v1/requests", "/v1/decisions", "/v1/jobs", "/v1/audit", "/v1/users"],
)
def test_a_value_that_is_not_a_cursor_is_a_422_naming_after(client, admin, url):
    """Every list that takes `after` refuses a made-up one by field, never with a 500."""
    response = client.get(f"{url}?after=bm90LWEtY3Vyc29y", headers=admin)
    assert response.status_code == 422 and "after" in response.json["errors"], response.json


def test_an_access_report_pages_by_cursor(client, token, admin, people):
    """The access report's holders continue from a cursor like the other lists: two grants
    to one person in the period, one a page, the second page the last."""
    ada = token("ada")
    for _ in range(2):
        client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=ada)
        held = client.get("/v1/assignments?state=active", headers=ada).json[0]
        assert client.delete(f"/v1/assignments/{held['id']}", headers=ada).status_code == 200
    url = (
        "/v1/access-report?package=scope-a-readers&from=2026-01-05T08:00:00Z"
        "&to=2026-01-05T10:00:00Z&page_size=1"
    )
    first, meta = page(client, admin, url + "&after=")
    second, last = page(client, admin, url + f"&after={meta['next_after']}")
    assert len(first) == len(second) == 1 and "next_after" not in last
    assert first[0]["assignment_id"] != second[0]["assignment_id"]
