"""Each list's page query is answered from an index in the list's order, never by sorting
every match: EXPLAIN of the exact SQL the endpoint sends, on SQLite and PostgreSQL.

On PostgreSQL the tables are nearly empty, so the planner's own choice says little; the test
turns off sequential scans, sorts and incremental sorts (`enable_*`), which makes a plan with
one cost more than any without. A Sort node left in the plan then means no index can return
the rows in the ORDER BY's order under that filter, which is what the test rules out; the
seeded million-row timings are bench/million.py's. SQLite's EXPLAIN QUERY PLAN says "USE TEMP
B-TREE FOR ORDER BY" when it sorts.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from sqlalchemy import event

from policyd.api.context import components

AT = "2026-01-05T09:00:00+00:00"


def cursor(*values) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


TIMED = cursor(AT, "01a24b7b-7071-7217-9b23-0bc7e4b91ce5")
REPORT = "/v1/access-report?at=2026-01-05T10:00:00Z"

# (url, table of the page, the index expected to serve it)
LISTS = [
    ("/v1/assignments", "assignments", "ix_assignments_starts"),
    ("/v1/assignments?package=p", "assignments", "ix_assignments_package_starts"),
    ("/v1/assignments?subject=ada", "assignments", "ix_assignments_subject_starts"),
    ("/v1/assignments?state=active", "assignments", "ix_assignments_state"),
    (
        "/v1/assignments?expiring_before=2026-02-01T00:00:00Z",
        "assignments",
        "ix_assignments_expires",
    ),
    ("/v1/requests", "requests", "ix_requests_created"),
    ("/v1/requests?state=pending_approval", "requests", "ix_requests_state"),
    ("/v1/requests?subject=ada", "requests", "ix_requests_subject_id"),
    # A catalog's packages filter the walk of the list's order (no sort of the matches).
    ("/v1/requests?catalog=finance", "requests", "ix_requests_created"),
    ("/v1/decisions", "decisions", "ix_decisions_at"),
    ("/v1/decisions?subject=ada", "decisions", "ix_decisions_subject_at"),
    ("/v1/decisions?package=p", "decisions", "ix_decisions_package"),
    ("/v1/decisions?version=v1", "decisions", "ix_decisions_version"),
    ("/v1/audit", "audit", "audit_pkey"),
    ("/v1/audit?object_id=x", "audit", "ix_audit_object_id"),
    ("/v1/audit?action=x", "audit", "ix_audit_action"),
    ("/v1/audit?request_id=x", "audit", "ix_audit_request_id"),
    ("/v1/jobs", "jobs", "ix_jobs_created"),
    ("/v1/jobs?state=failed", "jobs", "ix_jobs_state_created"),
    (f"{REPORT}&package=p", "assignments", "ix_assignments_package_starts"),
    (f"{REPORT}&subject=ada", "assignments", "ix_assignments_subject_starts"),
]


def page_queries(app, client, headers, url: str, table: str) -> list[tuple[str, object]]:
    """The SELECTs ... LIMIT on `table` that GET `url` sent, with their parameters (not the
    count, bounded by a LIMIT too: tests/api/test_bounded_counts.py)."""
    sent: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        page = statement.lstrip().startswith("SELECT") and "LIMIT" in statement
        page = page and "count(*)" not in statement
        if page and f"FROM {table}" in statement:
            sent.append((statement, parameters))

    engine = components(app).database.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        response = client.get(url, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert response.status_code == 200, response.json
    assert sent, f"{url} sent no page query on {table}"
    return sent


def plan(app, statement: str, parameters) -> str:
    engine = components(app).database.engine
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            return "\n".join(row[-1] for row in rows)
        for setting in ("enable_seqscan", "enable_sort", "enable_incremental_sort"):
            connection.exec_driver_sql(f"SET LOCAL {setting} = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        return "\n".join(row[0] for row in rows)


def sorts(shown: str) -> bool:
    """Whether the plan has a sort node (a Merge Append of partitions' index scans shows its
    order as a "Sort Key" and sorts nothing) or SQLite's temporary B-tree for ORDER BY."""
    nodes = re.findall(r"(?:^|->)\s*((?:Incremental )?Sort)\b(?! Key)", shown, re.MULTILINE)
    return bool(nodes) or "TEMP B-TREE" in shown


def uses(app, shown: str, index: str) -> bool:
    """Whether the plan reads `index` (on PostgreSQL, of a partitioned table: the partitions'
    indexes attached to it); an integer primary key is SQLite's rowid."""
    engine = components(app).database.engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            tree = {index} | set(
                connection.exec_driver_sql(
                    "SELECT relid::regclass::text FROM pg_partition_tree(%(index)s::regclass)",
                    {"index": index},
                ).scalars()
            )
        used = set(re.findall(r" using (\S+) on ", shown))
        return bool(used & tree)
    if index.endswith("_pkey"):
        table = index.removesuffix("_pkey")
        return shown in (
            f"SCAN {table}",
            f"SCAN {table} USING INDEX sqlite_autoindex_{table}_1",
        ) or any(
            f"SEARCH {table} USING {key}" in shown
            for key in ("INTEGER PRIMARY KEY", f"INDEX sqlite_autoindex_{table}_1 (")
        )
    return f" USING INDEX {index} " in f"{shown} "


@pytest.mark.parametrize("after", ["", "cursor"], ids=["first-page", "after-a-cursor"])
@pytest.mark.parametrize(("url", "table", "index"), LISTS, ids=[u for u, _, _ in LISTS])
def test_a_page_is_read_from_the_index_of_its_order(app, client, admin, url, table, index, after):
    """The page query (first cursor page, and one after a cursor) uses the list's index and
    sorts nothing."""
    value = after and (cursor(5) if table == "audit" else TIMED)
    sep = "&" if "?" in url else "?"
    for statement, parameters in page_queries(
        app, client, admin, f"{url}{sep}after={value}", table
    ):
        shown = plan(app, statement, parameters)
        assert not sorts(shown), shown
        assert uses(app, shown, index), shown


@pytest.mark.parametrize("table", ["users", "groups"])
def test_a_numbered_directory_page_is_read_from_the_primary_key(app, client, admin, table):
    """Users and groups (numbered pages only) list in id order, straight off the key."""
    for n in range(11):
        response = client.put(f"/v1/{table}/x{n:02d}", json={}, headers=admin)
        assert response.status_code == 200
    for statement, parameters in page_queries(app, client, admin, f"/v1/{table}?page=2", table):
        shown = plan(app, statement, parameters)
        assert not sorts(shown), shown
        assert uses(app, shown, f"{table}_pkey"), shown


@pytest.mark.parametrize("after", ["", "x05"], ids=["first-page", "after-a-cursor"])
def test_a_cursor_page_of_users_is_read_from_the_primary_key(app, client, admin, after):
    """Users page by cursor as well (the first cursor page, and one after a cursor): in id
    order, straight off the key, nothing sorted."""
    for n in range(11):
        assert client.put(f"/v1/users/x{n:02d}", json={}, headers=admin).status_code == 200
    value = after and cursor(after)
    for statement, parameters in page_queries(
        app, client, admin, f"/v1/users?page_size=5&after={value}", "users"
    ):
        shown = plan(app, statement, parameters)
        assert not sorts(shown), shown
        assert uses(app, shown, "users_pkey"), shown


@pytest.mark.parametrize("catalog", ["", "&catalog=sales"], ids=["all", "one-catalog"])
def test_the_approver_inbox_walks_waiting_requests_in_order(app, client, token, catalog):
    """The inbox (of one catalog, too) walks the waiting requests newest first by index and
    checks each against the caller's stage_approvers key: no sort, no scan of either table."""
    for statement, parameters in page_queries(
        app, client, token("carol"), f"/v1/requests?approver=me&after={catalog}", "requests"
    ):
        shown = plan(app, statement, parameters)
        assert not sorts(shown), shown
        assert uses(app, shown, "ix_requests_state"), shown
        assert "Seq Scan" not in shown and "SCAN stage_approvers" not in shown, shown
