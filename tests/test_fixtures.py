"""The shared fixtures do what tests rely on: a rolled-back session, one settable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from policyd.store.models import Group


def test_a_commit_in_the_session_fixture_stays_inside_the_test(session, store):
    """A service's commit is seen by the test's session but by no other connection."""
    session.add(Group(id="G"))
    session.commit()
    assert session.get(Group, "G") is not None
    with store.session() as other:
        assert other.scalar(select(func.count()).select_from(Group)) == 0


def test_the_clock_starts_at_a_fixed_utc_moment_and_moves_when_told(clock):
    """clock() is 2026-01-05 09:00 UTC until advanced."""
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert clock() == start
    clock.advance(hours=1)
    assert clock() == start + timedelta(hours=1)
