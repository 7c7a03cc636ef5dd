"""Resolve a rule's lifetime policy into a concrete expiry for one request at `now`."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import isodate
from croniter import croniter

from policyd.domain import ResolvedLifetime
from policyd.rules.condition import parse_duration
from policyd.rules.model import LifetimePolicy, RequestedDuration


def next_fire(cron: str, timezone: str, now: datetime) -> datetime:
    """The first time strictly after `now` that `cron` fires, in UTC."""
    if len(cron.split()) == 5:
        # Five-field crons fire on whole minutes, so the whole minute shares one answer;
        # croniter costs ~100 µs, more than the rest of a decision.
        return _next_fire(cron, timezone, now.astimezone(UTC).replace(second=0, microsecond=0))
    return _next_fire.__wrapped__(cron, timezone, now)


@lru_cache(maxsize=1024)
def _next_fire(cron: str, timezone: str, now: datetime) -> datetime:
    local = now.astimezone(ZoneInfo(timezone))
    fire = croniter(cron, local).get_next(datetime)
    return fire.astimezone(UTC)


def resolve_lifetime(
    policy: LifetimePolicy, now: datetime, requested: str | None = None
) -> ResolvedLifetime:
    """Apply the default, the requester's wish and the maximum, explaining each step.

    Raises:
        ValueError: `requested` is not a valid ISO-8601 duration.
    """
    notes: list[str] = []
    if policy.duration is not None:
        expires = now + policy.duration
        notes.append(f"default lifetime {_text(policy.duration)}")
    elif policy.end_date is not None:
        expires = policy.end_date
        notes.append(f"ends on the fixed date {_stamp(expires)}")
    else:
        assert policy.until is not None  # the schema demands exactly one of the three
        expires = next_fire(policy.until.cron, policy.until.timezone, now)
        notes.append(f"ends at the next '{policy.until.cron}' ({policy.until.timezone})")

    clamped = False
    if requested:
        wanted = now + parse_duration(requested)
        if policy.requested is RequestedDuration.NONE:
            notes.append(f"requested {requested} ignored: this package has a fixed lifetime")
        elif policy.requested is RequestedDuration.SHORTER and wanted > expires:
            clamped = True
            notes.append(f"requested {requested} is longer than the default; the default applies")
        else:
            expires = wanted
            notes.append(f"requested {requested}")

    if policy.maximum is not None:
        cap = now + policy.maximum
        if expires > cap:
            clamped = True
            expires = cap
            notes.append(f"clamped to the maximum of {_text(policy.maximum)}")
    return ResolvedLifetime(
        expires_at=expires,
        explanation="; ".join(notes),
        clamped=clamped,
        extendable=policy.extendable,
    )


@lru_cache(maxsize=256)
def _text(duration) -> str:
    return isodate.duration_isoformat(duration)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
