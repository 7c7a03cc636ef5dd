"""Numbered pages count at most so many rows (store.query.COUNT_LIMIT, or the rows to the end
of the page if more) and say "more than" past it: checked on the SQL each list sends, and by
the rows a count reads on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event

from policyd.api.context import components
from policyd.store import query

ACTION = "directory.user_created"
REPORT = "/v1/access-report?at=2026-01-05T10:00:00Z"
# Every list that answers a numbered page with a count of rows in the database.
COUNTED = [
    "/v1/assignments",
    "/v1/assignments?subject=ada",
    "/v1/requests",
    "/v1/requests?approver=me",
    "/v1/decisions",
    "/v1/audit",
    "/v1/jobs",
    "/v1/users",
    "/v1/groups",
    "/v1/organizations",
    "/v1/tokens",
    "/v1/policy-versions",
    "/v1/reviews/campaigns",
    "/v1/reviews/items",
    "/v1/sod-violations",
    f"{REPORT}&package=p",
]


def counts(app, client, headers, url: str) -> list[tuple[str, object]]:
    """The count statements (with their parameters) that GET `url` sent."""
    sent: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if "count(*)" in statement:
            sent.append((statement, parameters))

    engine = components(app).database.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        response = client.get(url, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert response.status_code == 200, response.json
    return sent


def meta(client, headers, url: str) -> dict:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.json
    return json.loads(response.headers["X-Pagination"])


@pytest.fixture
def fourteen(client, admin):
    """Fourteen users written, so fourteen audit records of one action."""
    for n in range(14):
        assert client.put(f"/v1/users/u{n:02d}", json={}, headers=admin).status_code == 200


@pytest.fixture
def bound(monkeypatch) -> int:
    """A count limit of 5, so a handful of rows goes past it."""
    monkeypatch.setattr(query, "COUNT_LIMIT", 5)
    return 5


@pytest.mark.parametrize("url", COUNTED)
def test_every_numbered_list_counts_under_a_limit(app, client, admin, url):
    """The count a numbered page sends reads its matches through a LIMIT (a sequential
    SQLite/PostgreSQL count of every row would have none), as many as the page needs."""
    sent = counts(app, client, admin, url)
    assert sent, f"{url} sent no count"
    for statement, _ in sent:
        assert "LIMIT" in statement.upper(), statement


def test_a_count_past_the_limit_says_more_than_and_keeps_next_page(client, admin, fourteen, bound):
    """Fourteen matches, a limit of five: page 1 says more than 5 with no total, total
    pages or last page, yet knows page 2 and its cursor."""
    page = meta(client, admin, f"/v1/audit?action={ACTION}&page_size=2")
    assert page["total_more_than"] == bound
    assert not {"total", "total_pages", "last_page"} & page.keys()
    assert (page["page"], page["next_page"]) == (1, 2) and page["next_after"]


def test_a_page_deeper_than_the_limit_counts_to_its_own_end(client, admin, fourteen, bound):
    """Page 4 of 2 counts past its end (8 rows): more than 8; the last page counts all 14
    and has its exact total and no next page."""
    deep = meta(client, admin, f"/v1/audit?action={ACTION}&page_size=2&page=4")
    assert (deep["total_more_than"], deep["next_page"]) == (8, 5)
    last = meta(client, admin, f"/v1/audit?action={ACTION}&page_size=2&page=7")
    assert (last["total"], last["last_page"], last["page"]) == (14, 7, 7)
    assert "next_page" not in last and "total_more_than" not in last


def test_a_list_under_the_limit_keeps_its_exact_total(client, admin, fourteen):
    """The documented header, unchanged where fewer rows match than the limit."""
    page = meta(client, admin, f"/v1/audit?action={ACTION}&page_size=5&page=2")
    assert (page["total"], page["total_pages"], page["last_page"]) == (14, 3, 3)
    assert "total_more_than" not in page


def test_the_count_reads_no_more_rows_than_its_limit(app, client, admin, fourteen, bound):
    """The count sent for page 1 answers 6 (the limit plus one) of fourteen matches on
    either database; on PostgreSQL no node of its executed plan handles more than 6 rows."""
    url = f"/v1/audit?action={ACTION}&page_size=2"
    ((statement, parameters),) = counts(app, client, admin, url)
    engine = components(app).database.engine
    with engine.connect() as connection:
        assert connection.exec_driver_sql(statement, parameters).scalar_one() == bound + 1
        if engine.dialect.name != "postgresql":
            return
        explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}"
        plan = connection.exec_driver_sql(explain, parameters).scalar_one()[0]["Plan"]
    nodes, read = [plan], []
    while nodes:
        node = nodes.pop()
        read.append(node["Actual Rows"] + node.get("Rows Removed by Filter", 0))
        nodes += node.get("Plans", [])
    assert max(read) <= bound + 1, plan
