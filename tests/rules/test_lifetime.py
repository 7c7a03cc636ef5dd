"""Lifetimes: defaults, requested durations, maximums and cron ends."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import isodate
import pytest

from policyd.rules.lifetime import (
    LifetimeError,
    lifetime_cron_problem,
    next_fire,
    resolve_lifetime,
    same_from_any_now,
)
from policyd.rules.model import LifetimePolicy, RequestedDuration
from policyd.rules.timing import Window

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


def test_a_permanent_lifetime_has_no_expiry():
    """`permanent: true` resolves to no end at all, and says so."""
    life = resolve_lifetime(LifetimePolicy(permanent=True), NOW)
    assert life.expires_at is None
    assert life.explanation == "permanent: no end date"


def test_a_requester_may_shorten_permanent_access():
    """A requested duration shortens permanent access (`requested: shorter`, the default)."""
    life = resolve_lifetime(LifetimePolicy(permanent=True), NOW, "P7D")
    assert life.expires_at == NOW + timedelta(days=7)


def test_a_requested_duration_is_ignored_for_a_fixed_permanent_lifetime():
    """With `requested: none` permanent access stays permanent whatever is asked."""
    policy = LifetimePolicy(permanent=True, requested=RequestedDuration.NONE)
    assert resolve_lifetime(policy, NOW, "P7D").expires_at is None


def test_an_end_date_that_has_passed_cannot_be_resolved():
    """Access that would end before it starts is a LifetimeError naming the date."""
    policy = LifetimePolicy(end_date=NOW - timedelta(days=1))
    with pytest.raises(LifetimeError, match="the fixed end date 2026-01-04T09:00:00Z has passed"):
        resolve_lifetime(policy, NOW)


def test_a_cron_that_stopped_firing_is_a_lifetime_error_not_a_croniter_error():
    """A cron with no firing left (here a year field in the past) raises LifetimeError."""
    with pytest.raises(LifetimeError, match="does not fire within 366 days after"):
        next_fire("0 0 1 1 * 0 2020", "UTC", NOW)


def test_a_cron_that_fires_only_past_the_horizon_is_a_lifetime_error():
    """A firing more than 366 days away does not count as an end."""
    with pytest.raises(LifetimeError, match="does not fire within 366 days"):
        next_fire("0 0 29 2 *", "UTC", datetime(2024, 3, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("0 0 31 2 *", "cron '0 0 31 2 *' never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 29 2 *", "does not fire at least once every 366 days (not after 2001-01-01 00:00 "),
        ("0 0 * 2 5#5", "does not fire at least once every 366 days"),
        ("0 0 1 1 * 0 2030", "has a year field"),
    ],
)
def test_a_lifetime_cron_must_fire_at_least_once_a_year(cron, problem):
    """Crons that never fire, or leave more than 366 days between firings, cannot end a
    lifetime."""
    assert problem in lifetime_cron_problem(Window(cron))


@pytest.mark.parametrize(
    "cron", ["0 0 1 1 *", "0 0 1 1,4,7,10 *", "0 18 * * 5", "0 0 L 2 *", "30 2 29 3 *"]
)
def test_crons_firing_at_least_yearly_can_end_a_lifetime(cron):
    """Yearly (366 days in a leap year), quarterly, weekly and last-day crons are accepted,
    also at a time a daylight-saving change skips in the zone."""
    assert lifetime_cron_problem(Window(cron, "Europe/Berlin")) is None


@pytest.mark.parametrize("requested", [None, "P2D", "P1Y"])
def test_a_resolved_lifetime_has_every_field_and_equals_the_dataclass_s_own(requested):
    """resolve_lifetime builds its result without __init__: it has every field and equals the
    ResolvedLifetime built from the same values."""
    policy = LifetimePolicy(
        duration=timedelta(days=7), maximum=timedelta(days=30), requested=RequestedDuration.ANY
    )
    life = resolve_lifetime(policy, NOW, requested)
    assert set(vars(life)) == {field.name for field in dataclasses.fields(life)}
    rebuilt = type(life)(**vars(life))
    assert rebuilt == life and hash(rebuilt) == hash(life) and repr(rebuilt) == repr(life)


PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize(
    "policy",
    [
        LifetimePolicy(duration=timedelta(hours=8)),
        LifetimePolicy(duration=timedelta(days=90), extendable=True),
        LifetimePolicy(permanent=True),
        LifetimePolicy(permanent=True, requested=RequestedDuration.ANY, extendable=True),
        LifetimePolicy(duration=timedelta(days=30), maximum=timedelta(days=30)),
        LifetimePolicy(duration=timedelta(days=7), maximum=timedelta(days=30)),
        LifetimePolicy(duration=timedelta(days=90), maximum=timedelta(days=30), extendable=True),
        LifetimePolicy(permanent=True, maximum=timedelta(days=365)),
    ],
)
@pytest.mark.parametrize(
    "now",
    [NOW, datetime(2026, 3, 29, 1, 30, tzinfo=PARIS), datetime(2199, 12, 31, 23, 59, tzinfo=UTC)],
)
def test_a_lifetime_the_same_from_any_now_resolves_as_resolve_lifetime(policy, now):
    """same_from_any_now(policy)(now) equals resolve_lifetime(policy, now), in any zone."""
    same = same_from_any_now(policy)
    assert same is not None
    resolved = same(now)
    assert resolved == resolve_lifetime(policy, now) and repr(resolved) == repr(
        resolve_lifetime(policy, now)
    )
    assert set(vars(resolved)) == {field.name for field in dataclasses.fields(resolved)}


@pytest.mark.parametrize(
    "policy",
    [
        LifetimePolicy(end_date=datetime(2027, 1, 1, tzinfo=UTC)),
        LifetimePolicy(until=Window("0 0 1 */3 *")),
        LifetimePolicy(duration=isodate.Duration(months=1)),
    ],
    ids=["end-date", "cron", "months"],
)
def test_other_lifetimes_are_resolved_from_each_now(policy):
    """A fixed end, a cron or a calendar duration has no now-free form."""
    assert same_from_any_now(policy) is None
