"""Resolve a rule's lifetime policy into a concrete expiry for one request at `now`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import isodate
from croniter import CroniterError, croniter

from policyd.domain import ResolvedLifetime
from policyd.rules.model import LifetimePolicy, RequestedDuration
from policyd.rules.timing import Window, parse_duration

# A lifetime's cron must fire at least once in any span this long (a yearly cron does).
HORIZON = timedelta(days=366)
# The calendar of a year depends on its first weekday and whether it is a leap year; the 28
# years from 2001 hold every combination, so a cron that fires within HORIZON all through
# them does so in any year (a pattern needing 29 February fails within four years anyway).
_CHECK_FROM = (2001, 1, 1)
_CHECK_UNTIL = 2030


class LifetimeError(ValueError):
    """A lifetime that cannot be resolved at this decision time; the message says why."""


def next_fire(cron: str, timezone: str, now: datetime) -> datetime:
    """The first time strictly after `now` that `cron` fires, in UTC.

    Raises:
        LifetimeError: it does not fire within HORIZON after `now`.
    """
    if len(cron.split()) == 5:
        # Five-field crons fire on whole minutes, so the whole minute shares one answer;
        # croniter costs ~100 µs, more than the rest of a decision.
        now = now.astimezone(UTC).replace(second=0, microsecond=0)
        return _next_fire(cron, timezone, now)
    return _next_fire.__wrapped__(cron, timezone, now)


@lru_cache(maxsize=1024)
def _next_fire(cron: str, timezone: str, now: datetime) -> datetime:
    fire = _step(cron, ZoneInfo(timezone), now, forward=True)
    if fire is None or fire - now > HORIZON:
        raise LifetimeError(
            f"cron {cron!r} ({timezone}) does not fire within {HORIZON.days} days after "
            f"{_stamp(now)}"
        )
    return fire.astimezone(UTC)


def _step(
    cron: str, zone: ZoneInfo, start: datetime, *, forward: bool, years: int = 2
) -> datetime | None:
    """The next (or previous) firing from `start` within `years`, or None."""
    try:
        # Two years of search find any firing within HORIZON, and bound the time croniter
        # spends looking for one that never comes.
        found = croniter(cron, start.astimezone(zone), max_years_between_matches=years)
        return found.get_next(datetime) if forward else found.get_prev(datetime)
    except (CroniterError, ValueError, OverflowError):
        return None


@lru_cache(maxsize=256)
def lifetime_cron_problem(window: Window) -> str | None:
    """Why `window`'s cron cannot end a lifetime, or None when it fires often enough.

    It must have no year field and fire at least once in every HORIZON (checked over every
    kind of calendar year), so every decision finds an end within HORIZON.
    """
    cron, zone = window.cron, ZoneInfo(window.timezone)
    if len(cron.split()) == 7:
        return f"cron {cron!r} has a year field, so it stops firing; a lifetime cron repeats"
    start = datetime(*_CHECK_FROM, tzinfo=zone)
    end = start.replace(year=_CHECK_UNTIL)
    fired = _step(cron, zone, start, forward=True)
    if fired is None:
        rare = _step(cron, zone, start, forward=True, years=_CHECK_UNTIL - start.year)
        return _gap(cron, start, rare) if rare else f"cron {cron!r} never fires"
    if fired - start > HORIZON:
        return _gap(cron, start, fired)
    while fired < end:
        # The last firing before fired + HORIZON: none after `fired` means a longer gap.
        latest = _step(cron, zone, fired + HORIZON + timedelta(minutes=1), forward=False)
        if latest is None or latest <= fired:
            later = _step(cron, zone, fired, forward=True, years=_CHECK_UNTIL - start.year)
            return _gap(cron, fired, later)
        fired = latest
    return None


def _gap(cron: str, after: datetime, fired: datetime | None) -> str:
    until = f"until {fired:%Y-%m-%d %H:%M}" if fired else "ever again"
    return (
        f"cron {cron!r} does not fire at least once every {HORIZON.days} days (not after "
        f"{after:%Y-%m-%d %H:%M} {until}); a lifetime must end within {HORIZON.days} days"
    )


def resolve_lifetime(
    policy: LifetimePolicy, now: datetime, requested: str | None = None
) -> ResolvedLifetime:
    """Apply the default, the requester's wish and the maximum, explaining each step.

    Raises:
        ValueError: `requested` is not a valid ISO-8601 duration.
        LifetimeError: the lifetime has no end after `now` (a cron that does not fire, an
            end date that has passed).
    """
    notes: list[str] = []
    # span: how long from its start; not_after: the fixed end (see ResolvedLifetime.ends)
    expires, span, not_after = _default_end(policy, now, notes)

    clamped = False
    if requested:
        wanted = now + parse_duration(requested)
        if policy.requested is RequestedDuration.NONE:
            notes.append(f"requested {requested} ignored: this package has a fixed lifetime")
        elif policy.requested is RequestedDuration.SHORTER and expires and wanted > expires:
            clamped = True
            notes.append(f"requested {requested} is longer than the default; the default applies")
        else:
            expires, span = wanted, wanted - now
            if policy.requested is RequestedDuration.ANY:
                not_after = None  # any duration up to the maximum, past a fixed end too
            notes.append(f"requested {requested}")

    if policy.maximum is not None:
        cap = now + policy.maximum
        span = cap - now if span is None else min(span, cap - now)
        if expires is None or expires > cap:
            clamped = True
            expires = cap
            notes.append(f"clamped to the maximum of {_text(policy.maximum)}")
    # Made without the frozen dataclass's __init__, which sets each field through
    # object.__setattr__: half of this function's instructions (see decision.make_decision).
    resolved = _new(ResolvedLifetime)
    resolved.__dict__.update(
        expires_at=expires,
        explanation="; ".join(notes),
        clamped=clamped,
        extendable=policy.extendable,
        span=span,
        not_after=not_after,
    )
    return resolved


_new = object.__new__
_set = object.__setattr__


def same_from_any_now(policy: LifetimePolicy) -> Callable[[datetime], ResolvedLifetime] | None:
    """`resolve_lifetime(policy, now)` (no requested duration) as a function of `now` alone,
    for a policy whose terms are the same from every `now`: permanent or a fixed duration, with
    or without a maximum; None for any other policy. Decisions keep it per rule (decision.py).
    """
    terms = [term for term in (policy.duration, policy.maximum) if term is not None]
    if policy.end_date is not None or policy.until is not None:
        return None
    if any(type(term) is not timedelta for term in terms):  # months and years: calendar-aware
        return None
    if not policy.permanent and policy.duration is None:
        return None
    # From any aware now, now + t - now is t (one tzinfo), and the notes name no moment.
    reference = datetime(2000, 1, 1, tzinfo=UTC)
    probe = resolve_lifetime(policy, reference)
    offset = None if probe.expires_at is None else probe.expires_at - reference
    longest = max(terms, default=None)
    overflows = longest is not None and longest != offset
    fixed = {
        "explanation": probe.explanation,
        "clamped": probe.clamped,
        "extendable": probe.extendable,
        "span": probe.span,
        "not_after": None,
    }

    def resolve(now: datetime) -> ResolvedLifetime:
        if overflows:  # past year 9999 as resolve_lifetime, which adds every term to now
            now + longest
        expires = None if offset is None else now + offset
        resolved = _new(ResolvedLifetime)
        _set(resolved, "__dict__", {"expires_at": expires, **fixed})
        return resolved

    return resolve


def _default_end(
    policy: LifetimePolicy, now: datetime, notes: list[str]
) -> tuple[datetime | None, timedelta | None, datetime | None]:
    """(expires, span, not_after) of the policy's own end before any wish or maximum; says
    which in `notes`.

    Raises:
        LifetimeError: the fixed end date has passed.
    """
    if policy.permanent:
        notes.append("permanent: no end date")
        return None, None, None
    if policy.duration is not None:
        expires = now + policy.duration
        notes.append(f"default lifetime {_text(policy.duration)}")
        return expires, expires - now, None  # span a timedelta, also for months and years
    if policy.end_date is not None:
        expires = policy.end_date
        if expires <= now:
            raise LifetimeError(f"the fixed end date {_stamp(expires)} has passed")
        notes.append(f"ends on the fixed date {_stamp(expires)}")
        return expires, None, expires
    assert policy.until is not None  # the schema demands exactly one kind of end
    expires = next_fire(policy.until.cron, policy.until.timezone, now)
    notes.append(f"ends at the next '{policy.until.cron}' ({policy.until.timezone})")
    return expires, None, expires


@lru_cache(maxsize=256)
def _text(duration) -> str:
    return isodate.duration_isoformat(duration)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
