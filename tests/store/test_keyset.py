"""Keyset pages: a cursor walk shows every row once, in the list's order, without a total."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from policyd.store import Database
from policyd.store.keyset import CursorError, keyset_page
from policyd.store.models import DecisionRecord, Job
from tests.decision_support import decision_record

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def decision(number: int, at: datetime) -> DecisionRecord:
    return decision_record(f"d-{number:04d}", at)


@pytest.fixture
def decisions(store: Database):
    """23 decisions, three to each minute (ties on the time), and a session on them."""
    with store.session() as session:
        session.add_all(decision(n, START + timedelta(minutes=n // 3)) for n in range(23))
        session.commit()
        yield session


NEWEST_FIRST = select(DecisionRecord).order_by(DecisionRecord.at.desc(), DecisionRecord.id.desc())


def walk(session, query, limit: int) -> list[str]:
    seen, after = [], ""
    while after is not None:
        rows, total = keyset_page(session, query, after=after, offset=0, limit=limit)
        assert total is None
        seen += [row.id for row in rows]
        after = rows.next_after
    return seen


def test_a_cursor_walk_shows_every_row_once_in_order(decisions):
    """Pages of 4 after each other's cursor give the 23 rows in the ORDER BY's order, ties on
    the time broken by id, the last page without a next cursor."""
    assert walk(decisions, NEWEST_FIRST, 4) == [f"d-{n:04d}" for n in reversed(range(23))]


def test_a_cursor_walk_follows_an_ascending_order(decisions):
    """The same walk over an ascending order gives the rows oldest first."""
    query = select(DecisionRecord).order_by(DecisionRecord.at, DecisionRecord.id)
    assert walk(decisions, query, 5) == [f"d-{n:04d}" for n in range(23)]


def test_a_numbered_page_counts_and_gives_the_cursor_of_the_next(decisions):
    """Without a cursor the page comes by offset with the total, and its next_after continues
    exactly where it ends; the last page has none."""
    rows, total = keyset_page(decisions, NEWEST_FIRST, after=None, offset=4, limit=4)
    assert (total, [r.id for r in rows]) == (23, [f"d-{n:04d}" for n in range(18, 14, -1)])
    following, _ = keyset_page(decisions, NEWEST_FIRST, after=rows.next_after, offset=0, limit=4)
    assert [r.id for r in following] == [f"d-{n:04d}" for n in range(14, 10, -1)]
    last, _ = keyset_page(decisions, NEWEST_FIRST, after=None, offset=20, limit=4)
    assert (len(last), last.next_after) == (3, None)


@pytest.mark.parametrize(
    "after",
    ["%%%", "bm90IGpzb24", "e30", "WzFd", "WyJ4IiwgImQiXQ", "WyIyMDI2LTAxLTA1VDA5OjAwOjAwIiwgMV0"],
    ids=["not-base64", "not-json", "an-object", "too-few-values", "not-a-time", "naive-time"],
)
def test_a_value_that_is_not_a_cursor_is_refused(decisions, after):
    """Garbage, other JSON, the wrong number of values or of types is a CursorError."""
    with pytest.raises(CursorError):
        keyset_page(decisions, NEWEST_FIRST, after=after, offset=0, limit=4)


def test_a_cursor_with_an_integer_key_round_trips(store: Database):
    """A list ordered by an integer and a text id pages on from the cursor it gave."""
    with store.session() as session:
        for n in range(5):
            session.add(
                Job(
                    id=f"j-{n}",
                    kind="grant",
                    connector="c",
                    resource="r",
                    role="member",
                    subject_id="ada",
                    state="queued",
                    attempts=n % 2,
                    max_attempts=3,
                    run_at=START,
                    created_at=START,
                )
            )
        session.commit()
        query = select(Job).order_by(Job.attempts, Job.id)
        assert walk(session, query, 2) == ["j-0", "j-2", "j-4", "j-1", "j-3"]
