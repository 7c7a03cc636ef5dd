"""Paged lists: numbered pages with a total, cursor walks, and a bad cursor refused by field."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.services.errors import InvalidError
from policyd.services.listing import MAX_CURSOR, list_page
from policyd.store.models import DecisionRecord
from tests.decision_support import decision_record

NEWEST_FIRST = select(DecisionRecord).order_by(DecisionRecord.at.desc(), DecisionRecord.id.desc())


@pytest.fixture
def seven(session, clock):
    """Seven decisions, two to a minute (ties on the time)."""
    session.add_all(
        decision_record(f"d-{n}", clock() + timedelta(minutes=n // 2)) for n in range(7)
    )
    session.flush()
    return [f"d-{n}" for n in range(6, -1, -1)]


def test_a_numbered_page_comes_with_the_total(session, seven):
    """Without a cursor: the page at `offset`, the total, and the cursor of the next page."""
    rows, total = list_page(session, NEWEST_FIRST, after=None, offset=2, limit=3)
    assert ([row.id for row in rows], total) == (seven[2:5], 7)
    assert rows.next_after


def test_a_cursor_walk_shows_every_row_once_without_a_total(session, seven):
    """after="" starts a walk; each page's cursor continues it; the last page has none."""
    seen, after, pages = [], "", 0
    while after is not None:
        rows, total = list_page(session, NEWEST_FIRST, after=after, offset=0, limit=3)
        assert total is None
        seen += [row.id for row in rows]
        after, pages = rows.next_after, pages + 1
    assert (seen, pages) == (seven, 3)


def test_an_empty_list_has_no_rows_and_no_next_page(session):
    """Nothing stored: an empty page, total 0, no cursor."""
    rows, total = list_page(session, NEWEST_FIRST, after=None, offset=0, limit=10)
    assert (list(rows), total, rows.next_after) == ([], 0, None)


@pytest.mark.parametrize("after", ["%%%", "e30", "x" * (MAX_CURSOR + 1)])
def test_a_value_that_is_not_a_cursor_is_invalid_naming_after(session, seven, after):
    """Garbage, other JSON or an over-long value is a 422 naming `after`, not a crash."""
    with pytest.raises(InvalidError) as err:
        list_page(session, NEWEST_FIRST, after=after, offset=0, limit=3)
    assert err.value.field == "after"
