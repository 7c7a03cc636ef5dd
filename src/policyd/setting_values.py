"""How each kind of setting value is read and checked; the error names the value."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from policyd.rules.timing import parse_duration


def parse_text(value: Any) -> str:
    return str(value).strip()


def parse_optional_text(value: Any) -> str | None:
    return parse_text(value) or None if value is not None else None


def parse_number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not 0 <= number < 10**9:
        raise ValueError(f"{value!r} must be a number ≥ 0")
    return number


def parse_count(value: Any) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if not 0 <= number < 10**9:
        raise ValueError(f"{value!r} must be a whole number ≥ 0")
    return number


def parse_positive(value: Any) -> int:
    number = parse_count(value)
    if number == 0:
        raise ValueError(f"{value!r} must be a whole number > 0")
    return number


def parse_seconds(value: Any) -> float:
    """A number of seconds above 0 (an interval: 0 would make a busy loop)."""
    number = parse_number(value)
    if number <= 0:
        raise ValueError(f"{value!r} must be a number of seconds > 0")
    return number


def parse_bytes(value: Any) -> int:
    number = parse_count(value)
    if number == 0:
        raise ValueError(f"{value!r} must be a whole number of bytes > 0")
    return number


def parse_port(value: Any) -> int:
    number = parse_count(value)
    if not 0 < number < 65536:
        raise ValueError(f"{value!r} is not a TCP port (1-65535)")
    return number


def parse_flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = parse_text(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{value!r} is not on/off (1, true, yes, on / 0, false, no, off)")


def parse_optional_flag(value: Any) -> bool | None:
    return None if value is None or value == "" else parse_flag(value)


def parse_choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = parse_text(value).lower()
        if text not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def parse_optional_choice(*allowed: str) -> Callable[[Any], str | None]:
    choice = parse_choice(*allowed)
    return lambda value: None if value is None or parse_text(value) == "" else choice(value)


def parse_iso_duration(value: Any) -> Any:
    """An ISO-8601 duration (timedelta, or isodate.Duration with months or years)."""
    if not isinstance(value, str):
        return value
    return parse_duration(parse_text(value))


def parse_reminders(text: str) -> tuple[timedelta, ...]:
    """Reminder offsets from a setting such as "P14D,P1D" (an empty text: no reminders),
    longest first.

    Raises:
        ValueError: naming the part that is not a duration in days, hours or minutes.
    """
    offsets = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        offset = parse_duration(part)
        if not isinstance(offset, timedelta):
            raise ValueError(f"{part!r}: give reminder offsets in days or hours, e.g. P14D")
        offsets.append(offset)
    return tuple(sorted(set(offsets), reverse=True))


def parse_iso_durations(value: Any) -> tuple[timedelta, ...]:
    """A comma-separated list of ISO-8601 durations ('' is none), longest first."""
    if isinstance(value, tuple | list):
        value = ",".join(v if isinstance(v, str) else iso_text(v) for v in value)
    return parse_reminders(parse_text(value))


def parse_lease(value: Any) -> timedelta:
    """A job lease: an ISO-8601 duration from PT1S to P1D (or such a timedelta)."""
    lease = value if isinstance(value, timedelta) else parse_duration(parse_text(value))
    if not isinstance(lease, timedelta) or not timedelta(seconds=1) <= lease <= timedelta(days=1):
        raise ValueError(f"{value!r} is not a lease from PT1S to P1D, e.g. PT1M")
    return lease


def parse_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, tuple | list | set | frozenset):
        return tuple(sorted(str(v).strip() for v in value if str(v).strip()))
    return tuple(sorted(p.strip() for p in parse_text(value).split(",") if p.strip()))


def parse_optional_path(value: Any) -> Path | None:
    return Path(parse_text(value)).expanduser() if value not in (None, "") else None


# -- the settings


def iso_text(delta: timedelta) -> str:
    if delta.seconds == 0 and delta.microseconds == 0:
        return f"P{delta.days}D"
    return f"PT{int(delta.total_seconds())}S"


def parse_language(value: Any) -> str:
    """A language tag such as `en` or `pt-BR`."""
    text = parse_text(value)
    if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", text):
        raise ValueError(f"{text!r} is not a language tag such as en or pt-BR")
    return text


def parse_public_url(value: Any) -> str | None:
    """An http(s) URL without a query or fragment ('' is none); no trailing slash."""
    text = parse_optional_text(value)
    if text is None:
        return None
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an http or https URL without a query")
    return text.rstrip("/")


def parse_optional_offset(value: Any) -> timedelta | None:
    """A positive span of days, hours or minutes ('' is none)."""
    if value is None or isinstance(value, timedelta):
        span = value
    else:
        text = parse_text(value)
        if not text:
            return None
        span = parse_duration(text)
        if not isinstance(span, timedelta):
            raise ValueError(f"{text!r}: give it in days or hours, e.g. P2D")
    if span is not None and span <= timedelta(0):
        raise ValueError("give a positive duration, e.g. P2D")
    return span
