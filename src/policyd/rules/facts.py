"""Derive the flat fact durable_rules matches on from a subject, a request and `now`.

Only derivation happens here (email domain, text forms, numbers, which cron windows hold);
every comparison a rule makes is left to the engine.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from policyd.domain import RequestOptions, Subject
from policyd.rules.compiler import (
    FALSE,
    MARKER,
    TRUE,
    CompiledBundle,
    fact_key,
    number_key,
    text_value,
)
from policyd.rules.condition import ATTRIBUTE_KEY, as_number, canon_text, parse_duration

SENTINEL = ""  # never a valid compared value; keeps lists non-empty for $iall


def build_fact(
    compiled: CompiledBundle, subject: Subject, request: RequestOptions, now: datetime
) -> dict[str, Any]:
    fact: dict[str, Any] = {MARKER: 1}
    texts = {
        "subject.id": subject.id,
        "subject.email": subject.email.strip().lower() if subject.email else None,
        "subject.domain": subject.domain,
        "subject.type": str(subject.type).lower(),
        "subject.manager": subject.manager,
        "subject.organization": subject.organization,
        "subject.department": subject.department,
        "subject.jobTitle": subject.job_title,
        "subject.employeeType": subject.employee_type,
    }
    for name, value in texts.items():
        _put_text(fact, name, value)
    for key, value in subject.attributes.items():
        if isinstance(key, str) and ATTRIBUTE_KEY.match(key):
            name = f"subject.attributes.{key}"
            _put_text(fact, name, value)
            number = as_number(value)
            if number is not None:
                fact[number_key(name)] = number
    fact[fact_key("subject.groups")] = _text_list(subject.groups)
    fact[fact_key("subject.packages")] = _text_list(subject.packages)
    seconds = requested_seconds(request, now)
    if seconds is not None:
        fact[number_key("request.duration")] = seconds
    if request.has_justification:
        fact[fact_key("request.justification")] = TRUE
    for window, key in compiled.windows.items():
        fact[key] = TRUE if window.contains(now) else FALSE
    return fact


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
