"""A mass expiry's revoke path finds its rows by their ids, whatever the planner's statistics
say: taken before the expiry, they hold hardly any assignment `expiring` or job `running`,
and a plan by those numbers would read every such row through the state's index, per batch.

EXPLAIN of the exact statements the worker sent, on SQLite and PostgreSQL (statistics taken
while every assignment was active; sequential scans off, as the tables are small:
tests/api/test_list_plans.py says why).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, text

from policyd.domain import RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.directory import DirectoryService
from policyd.services.requests import RequestService
from tests.plan_support import explain
from tests.services.conftest import ROOT

USERS = [f"reader{i:02d}" for i in range(30)]
ELIGIBLE = "Group.ScopeA.Readers.Eligible"

# (what the statement is, words it holds, the index condition its rows are found with on
# PostgreSQL). The condition, not an index name: on the test's near-empty tables the planner
# may answer an id list from another index that holds the id (ix_assignments_expires ends
# with it), which it never prefers to the key on a table of any size.
BY_ID = "((id)::text = ANY "
STATEMENTS = [
    ("removing revoked assignments", ("UPDATE assignments", "RETURNING"), BY_ID),
    ("finishing revoke jobs", ("UPDATE jobs", "finished_at=", "RETURNING"), BY_ID),
    # the claim of queued jobs, whose subquery looks for a grant still running
    (
        "claiming jobs",
        ("UPDATE jobs", "attempts=(jobs.attempts +", "EXISTS"),
        "((assignment_id)::text = ",
    ),
]


@pytest.fixture
def expired(session, runtime, people, clock, deliver):
    """30 readers' Scope A access, granted, the statistics taken, then expired."""
    directory = DirectoryService(session)
    for user in USERS:
        directory.put_user(ROOT, user, {"email": f"{user}@contoso.com"}, now=clock())
    directory.add_members(ROOT, ELIGIBLE, USERS, now=clock())
    session.commit()
    requests = RequestService(session, runtime)
    for user in USERS:
        actor = Actor(user, Role.USER)
        requests.create(actor, "scope-a-readers", user, None, RequestOptions(), now=clock())
    deliver(clock())
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE assignments"))
        session.execute(text("ANALYZE jobs"))
    later = clock() + timedelta(hours=9)
    assert AssignmentService(session, runtime).expire_due(now=later) == len(USERS)
    return later


def test_the_revokes_of_a_mass_expiry_find_their_rows_by_id(session, expired, deliver):
    """Removing revoked assignments, finishing revoke jobs and a claim's look for a running
    grant read by key, never through ix_assignments_state or every running job."""
    sent: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        sent.append((statement, parameters))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", capture)
    try:
        deliver(expired)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    postgresql = engine.dialect.name == "postgresql"
    for what, words, condition in STATEMENTS:
        shown = [
            explain(session, statement, parameters)
            for statement, parameters in sent
            if all(word in statement for word in words)
        ]
        assert shown, f"no statement {what} was sent"
        for one in shown:
            for subquery in ("SubPlan", "CORRELATED SCALAR SUBQUERY"):
                if subquery in one:  # the claim's: what it reads for each queued job
                    one = one[one.rindex(subquery) :]
            assert "ix_assignments_state" not in one and "ix_jobs_due" not in one, (what, one)
            if postgresql:
                assert f"Index Cond: {condition}" in one, (what, one)
            else:
                assert "SCAN assignments" not in one and "SCAN jobs" not in one, (what, one)
