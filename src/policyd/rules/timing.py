"""Time in rule files: the range of decision times, cron windows and ISO-8601 durations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import isodate
from croniter import CroniterError, croniter

# Decisions are made at times in this range: croniter matches cron windows exactly only
# until about 2250 (it works with float timestamps), and a lifetime counted from such a time
# (no duration is longer than LONGEST_YEARS) stays far from the end of datetime (9999).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
LONGEST_YEARS = 1000  # generous: published versions may say P999Y for "forever"


@dataclass(frozen=True)
class Window:
    """A cron expression whose matching minutes form a time window."""

    cron: str
    timezone: str = "UTC"

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        return bool(croniter.match(self.cron, local))


def duration_seconds(text: str) -> float:
    """Seconds in a fixed-length ISO-8601 duration (no years or months).

    Raises:
        ValueError: not a duration, or one whose length depends on the calendar.
    """
    parsed = parse_duration(text)
    if isinstance(parsed, isodate.Duration):
        raise ValueError(f"{text!r}: years and months have no fixed length here; use days")
    return parsed.total_seconds()


def parse_duration(text: Any):
    """An ISO-8601 duration as timedelta (or isodate.Duration with years/months).

    Raises:
        ValueError: not a positive ISO-8601 duration.
    """
    if not isinstance(text, str) or not text.startswith("P"):
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as P90D or PT8H")
    try:
        parsed = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, OverflowError):
        raise ValueError(f"{text!r} is not an ISO-8601 duration such as P90D or PT8H") from None
    origin = datetime(2000, 1, 1)
    try:
        probe = origin + parsed
    except (OverflowError, ValueError):
        probe = datetime.max
    if probe <= origin:
        raise ValueError(f"{text!r}: a duration must be longer than zero")
    if probe > origin.replace(year=origin.year + LONGEST_YEARS):
        raise ValueError(f"{text!r}: a duration is at most {LONGEST_YEARS} years")
    return parsed


def check_decision_time(now: datetime) -> None:
    """Raises ValueError unless `now` is aware and between EARLIEST and LATEST."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("must carry a time zone (UTC), e.g. 2026-01-05T09:00:00Z")
    if not EARLIEST <= now < LATEST:
        raise ValueError(f"{now.isoformat()} is not between {EARLIEST.year} and {LATEST.year - 1}")


def to_utc(moment: datetime) -> datetime:
    """`moment` (aware) in UTC.

    Raises:
        ValueError: it has no UTC form within datetime's range (9999-12-31T23:00-05:00).
    """
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(f"{moment.isoformat()} is past the year 9999 in UTC") from None


def parse_window(raw: Any) -> Window:
    """`within: "cron"` or `within: {cron: "...", timezone: "Europe/Paris"}`.

    Raises:
        ValueError: bad cron expression or unknown time zone.
    """
    timezone = "UTC"
    if isinstance(raw, dict):
        unknown = set(raw) - {"cron", "timezone"}
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; use cron and timezone")
        timezone = raw.get("timezone", "UTC")
        raw = raw.get("cron")
    if not isinstance(raw, str) or not croniter.is_valid(raw):
        raise ValueError(f"{raw!r} is not a valid cron expression")
    if any(part.upper().startswith("R") for part in raw.split()):
        # croniter picks a random value for R on every parse: the rules would change by chance.
        raise ValueError(f"{raw!r}: random cron fields (R) are not allowed")
    check_timezone(timezone)
    return Window(cron=raw, timezone=timezone)


@lru_cache(maxsize=256)
def ever_fires(window: Window) -> bool:
    """Whether `window`'s cron fires at some decision time (EARLIEST to LATEST)."""
    start = EARLIEST.astimezone(ZoneInfo(window.timezone))
    years = LATEST.year - EARLIEST.year
    try:
        croniter(window.cron, start, max_years_between_matches=years).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        return False
    return True


def check_timezone(name: Any) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r}") from None
