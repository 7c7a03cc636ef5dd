"""Lifetimes: defaults, requested durations, maximums and cron ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policyd.rules.condition import Window
from policyd.rules.lifetime import next_fire, resolve_lifetime
from policyd.rules.model import LifetimePolicy, RequestedDuration

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_duration_starts_at_now():
    """A duration lifetime ends that long after the decision."""
    life = resolve_lifetime(LifetimePolicy(duration=timedelta(hours=8)), NOW)
    assert life.expires_at == NOW + timedelta(hours=8)
    assert not life.clamped


def test_shorter_request_is_honoured_and_longer_one_falls_back():
    """With `requested: shorter` a shorter wish applies and a longer one keeps the default."""
    policy = LifetimePolicy(duration=timedelta(days=7))
    assert resolve_lifetime(policy, NOW, "P2D").expires_at == NOW + timedelta(days=2)
    longer = resolve_lifetime(policy, NOW, "P30D")
    assert longer.expires_at == NOW + timedelta(days=7)
    assert longer.clamped and "longer than the default" in longer.explanation


def test_any_request_is_clamped_to_the_maximum_and_explained():
    """With `requested: any` a wish beyond max is clamped, and the clamp is explained."""
    policy = LifetimePolicy(
        duration=timedelta(days=7), maximum=timedelta(days=30), requested=RequestedDuration.ANY
    )
    assert resolve_lifetime(policy, NOW, "P20D").expires_at == NOW + timedelta(days=20)
    clamped = resolve_lifetime(policy, NOW, "P1Y")
    assert clamped.expires_at == NOW + timedelta(days=30)
    assert clamped.clamped and "clamped to the maximum of P30D" in clamped.explanation


def test_requested_none_ignores_the_wish():
    """With `requested: none` the requested duration is ignored and the reason says so."""
    policy = LifetimePolicy(duration=timedelta(days=7), requested=RequestedDuration.NONE)
    life = resolve_lifetime(policy, NOW, "PT1H")
    assert life.expires_at == NOW + timedelta(days=7)
    assert "ignored" in life.explanation


def test_end_date_is_capped_by_max():
    """A fixed end date further away than max is clamped to max."""
    policy = LifetimePolicy(end_date=datetime(2027, 1, 1, tzinfo=UTC), maximum=timedelta(days=10))
    life = resolve_lifetime(policy, NOW)
    assert life.expires_at == NOW + timedelta(days=10) and life.clamped


@pytest.mark.parametrize(
    ("now", "end"),
    [
        (datetime(2026, 1, 5, 9, 0, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        (datetime(2026, 3, 31, 23, 59, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
        (datetime(2026, 4, 1, 0, 0, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)),
        (datetime(2026, 12, 31, 12, 0, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_until_cron_ends_at_the_next_quarter_start(now, end):
    """`until: {cron}` ends at the next fire time strictly after now."""
    policy = LifetimePolicy(until=Window("0 0 1 1,4,7,10 *"))
    assert resolve_lifetime(policy, now).expires_at == end


def test_cron_in_a_time_zone_fires_in_local_time():
    """A cron lifetime with a timezone fires at local midnight, reported in UTC."""
    fire = next_fire("0 0 * * *", "Europe/Berlin", datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert fire == datetime(2026, 7, 1, 22, 0, tzinfo=UTC)


def test_a_cron_end_is_the_same_anywhere_within_a_minute():
    """The cached next fire time equals croniter's answer at any second of the minute."""
    cron = "0 0 1 1,4,7,10 *"
    for second in (0, 1, 59):
        now = datetime(2026, 3, 31, 23, 59, second, tzinfo=UTC)
        assert next_fire(cron, "UTC", now) == datetime(2026, 4, 1, tzinfo=UTC)
    assert next_fire(cron, "UTC", datetime(2026, 4, 1, 0, 0, 0, tzinfo=UTC)) == datetime(
        2026, 7, 1, tzinfo=UTC
    )
    assert next_fire(cron, "UTC", datetime(2026, 4, 1, 0, 0, 30, tzinfo=UTC)) == datetime(
        2026, 7, 1, tzinfo=UTC
    )
