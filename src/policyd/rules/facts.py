"""Derive the flat fact durable_rules matches on from a subject, a request and `now`.

Only derivation happens here (email domain, text forms, numbers, which cron windows hold);
every comparison a rule makes is left to the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any

from policyd.domain import RequestOptions, Subject
from policyd.rules.compiler import (
    FALSE,
    MARKER,
    TRUE,
    CompiledBundle,
    fact_key,
    number_key,
    number_value,
    text_value,
)
from policyd.rules.condition import Window, as_number, canon_text, parse_duration

SENTINEL = ""  # never a valid compared value; keeps lists non-empty for $iall


def build_fact(
    compiled: CompiledBundle, subject: Subject, request: RequestOptions, now: datetime
) -> dict[str, Any]:
    """The fact for one evaluation, holding only the fields the bundle's conditions read."""
    wanted = compiled.fields
    fact: dict[str, Any] = {MARKER: 1}
    for name, read in _TEXT_FIELDS.items():
        if name in wanted:
            _put_text(fact, name, read(subject))
    for key, value in subject.attributes.items():
        name = f"subject.attributes.{key}"
        if name in wanted:
            _put_text(fact, name, value)
            number = as_number(value)
            if number is not None:
                fact[number_key(name)] = number_value(number)
    if "subject.groups" in wanted:
        fact[fact_key("subject.groups")] = _text_list(subject.groups)
    if "subject.packages" in wanted:
        fact[fact_key("subject.packages")] = _text_list(subject.packages)
    if "request.duration" in wanted:
        seconds = requested_seconds(request, now)
        if seconds is not None:
            fact[number_key("request.duration")] = number_value(seconds)
    if "request.justification" in wanted and request.has_justification:
        fact[fact_key("request.justification")] = TRUE
    for window, key in compiled.windows.items():
        fact[key] = TRUE if _within(window, now.replace(second=0, microsecond=0)) else FALSE
    return fact


_TEXT_FIELDS: dict[str, Callable[[Subject], Any]] = {
    "subject.id": lambda s: s.id,
    "subject.email": lambda s: s.email.strip().lower() if s.email else None,
    "subject.domain": lambda s: s.domain,
    "subject.type": lambda s: str(s.type).lower(),
    "subject.manager": lambda s: s.manager,
    "subject.organization": lambda s: s.organization,
    "subject.department": lambda s: s.department,
    "subject.jobTitle": lambda s: s.job_title,
    "subject.employeeType": lambda s: s.employee_type,
}


@lru_cache(maxsize=4096)
def _within(window: Window, minute: datetime) -> bool:
    # Cron windows have minute resolution, so one answer serves a whole minute.
    return window.contains(minute)


def requested_seconds(request: RequestOptions, now: datetime) -> float | None:
    """The requested duration in seconds from `now` (months and years are calendar-aware)."""
    if not request.duration:
        return None
    return ((now + parse_duration(request.duration)) - now).total_seconds()


def _put_text(fact: dict[str, Any], name: str, value: Any) -> None:
    text = canon_text(value)
    if text:
        fact[fact_key(name)] = text_value(text)


def _text_list(values) -> list[str]:
    items = {canon_text(v) for v in values}
    return [SENTINEL, *sorted(text_value(v) for v in items if v)]
