"""Each query of a reconcile page reads the grants from their index and each grant's
assignment by primary key, on SQLite and PostgreSQL: EXPLAIN of the exact SQL it sends.

As in tests/api/test_list_plans.py, PostgreSQL's tables are nearly empty here, so the test
turns off sequential scans: a plan that still scans jobs or assignments means no index can
serve the query. The timings at a million assignments are bench/million.py's.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from policyd.services.directory import DirectoryService
from policyd.services.reconcile import reconcile
from tests.plan_support import explain
from tests.services import test_reconcile
from tests.services.conftest import ROOT
from tests.services.test_reconcile import GROUP

connectors, granted = test_reconcile.connectors, test_reconcile.granted  # its fixtures


def sent_selects(session, call) -> list[tuple[str, object]]:
    """The SELECTs on jobs that `call()` sent, with their parameters."""
    sent: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().startswith(("SELECT", "WITH")) and "jobs" in statement:
            sent.append((statement, parameters))

    engine = session.connection().engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return sent


@pytest.mark.parametrize("fix", [False, True], ids=["report", "fix"])
def test_a_page_reads_grants_by_index_and_assignments_by_key(
    session, connectors, granted, clock, fix
):
    """Every query of the page reads jobs through ix_jobs_grant_resource, never a scan of
    the table; the comparison reads each grant's assignment by its primary key."""
    DirectoryService(session).add_member(ROOT, GROUP, "bob", now=clock())
    session.commit()
    sent = sent_selects(
        session, lambda: reconcile(session, connectors, now=clock(), only="directory", fix=fix)
    )
    # The page's resources with their roles, its differences; then the next page's (none).
    assert len(sent) == 3, [statement for statement, _ in sent]
    sqlite = session.connection().dialect.name == "sqlite"
    grants = "USING INDEX ix_jobs_grant_resource" if sqlite else "using ix_jobs_grant_resource"
    by_key = (
        "SEARCH assignments USING INDEX sqlite_autoindex_assignments_1 (id=?)"
        if sqlite
        else "using assignments_pkey on assignments"
    )
    for statement, parameters in sent:
        shown = explain(session, statement, parameters)
        print(shown)
        read = [line for line in shown.splitlines() if " jobs" in line]
        assert read and all(grants in line for line in read), shown
        if "assignments" in statement:
            read = [line for line in shown.splitlines() if " assignments" in line]
            assert read and all(by_key in line for line in read), shown
