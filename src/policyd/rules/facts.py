"""Derive the flat fact durable_rules matches on from a subject, a request and `now`.

Only derivation happens here (email domain, text forms, numbers, which cron windows hold);
every comparison a rule makes is left to the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any, NamedTuple

from policyd.domain import RequestOptions, Subject
from policyd.rules.compiler import (
    FALSE,
    MARKER,
    TEXT_PREFIX,
    TRUE,
    CompiledBundle,
    fact_key,
    number_key,
    number_value,
)
from policyd.rules.condition import as_number, canon_text
from policyd.rules.timing import Window, parse_duration

SENTINEL = ""  # never a valid compared value; keeps lists non-empty for $iall


def build_fact(
    compiled: CompiledBundle, subject: Subject, request: RequestOptions, now: datetime
) -> dict[str, Any]:
    """The fact for one evaluation, holding only the fields the bundle's conditions read."""
    plan = _plan(compiled.fields)
    fact: dict[str, Any] = {MARKER: 1}
    for key, read in plan.texts:
        text = read(subject)
        if type(text) is not str:  # _text, inlined: most values are text already
            text = canon_text(text)
        if text:
            fact[key] = TEXT_PREFIX + text
    if plan.attributes:
        for name, value in subject.attributes.items():
            keys = plan.attributes.get(name)
            if keys is None:
                continue
            text = _text(value)
            if text:
                fact[keys[0]] = TEXT_PREFIX + text
            number = as_number(value)
            if number is not None:
                fact[keys[1]] = number_value(number)
    if plan.groups:
        _put_list(fact, plan.groups, subject.groups, compiled.members.get("subject.groups"))
    if plan.packages:
        _put_list(fact, plan.packages, subject.packages, compiled.members.get("subject.packages"))
    if plan.answers and request.answers:
        _put_scalars(fact, plan.answers, request.answers)
    if plan.duration:
        seconds = requested_seconds(request, now)
        if seconds is not None:
            fact[plan.duration] = number_value(seconds)
    if plan.justification and request.has_justification:
        fact[plan.justification] = TRUE
    if compiled.windows:
        minute = now.replace(second=0, microsecond=0)
        for window, key in compiled.windows.items():
            fact[key] = TRUE if _within(window, minute) else FALSE
    return fact


class _Plan(NamedTuple):
    """Which fact keys a bundle's conditions read, worked out once per set of fields."""

    texts: tuple[tuple[str, Callable[[Subject], Any]], ...]  # (fact key, reader)
    attributes: dict[str, tuple[str, str]]  # attribute -> (text key, number key)
    groups: str | None
    packages: str | None
    duration: str | None
    justification: str | None
    answers: dict[str, tuple[str, str]]  # question id -> (text key, number key)


@lru_cache(maxsize=64)
def _plan(fields: frozenset[str]) -> _Plan:
    def key_if(name: str, key: Callable[[str], str] = fact_key) -> str | None:
        return key(name) if name in fields else None

    prefix = "subject.attributes."
    answers = "answers."
    texts = [(fact_key(name), read) for name, read in _TEXT_FIELDS.items() if name in fields]
    return _Plan(
        texts=tuple(texts),
        attributes={
            name[len(prefix) :]: (fact_key(name), number_key(name))
            for name in fields
            if name.startswith(prefix)
        },
        groups=key_if("subject.groups"),
        packages=key_if("subject.packages"),
        duration=key_if("request.duration", number_key),
        justification=key_if("request.justification"),
        answers={
            name[len(answers) :]: (fact_key(name), number_key(name))
            for name in fields
            if name.startswith(answers)
        },
    )


_TEXT_FIELDS: dict[str, Callable[[Subject], Any]] = {
    "subject.id": attrgetter("id"),
    "subject.email": lambda s: s.email.strip().lower() if s.email else None,
    "subject.domain": attrgetter("domain"),
    "subject.type": lambda s: str(s.type).lower(),
    "subject.manager": attrgetter("manager"),
    "subject.organization": attrgetter("organization"),
    "subject.department": attrgetter("department"),
    "subject.jobTitle": attrgetter("job_title"),
    "subject.employeeType": attrgetter("employee_type"),
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


def _text(value: Any) -> str | None:
    # canon_text, with its commonest case first
    return value if type(value) is str else canon_text(value)


def _put_scalars(fact: dict[str, Any], keys_of: dict[str, tuple[str, str]], values) -> None:
    """Text and number keys for the answers the rules read (as for attributes)."""
    for name, (text_key, numeric_key) in keys_of.items():
        value = values.get(name)
        text = _text(value)
        if text:
            fact[text_key] = TEXT_PREFIX + text
        number = as_number(value)
        if number is not None:
            fact[numeric_key] = number_value(number)


def _put_list(fact: dict[str, Any], key: str, values, members: dict[str, str] | None) -> None:
    """The list under `key`, or, when the bundle names few of its values, one key for each
    named value the list holds (see compiler.MEMBER_LIMIT)."""
    if members is None:
        items = {TEXT_PREFIX + text for value in values if (text := _text(value))}
        fact[key] = [SENTINEL, *sorted(items)]
        return
    for value in values:
        member = members.get(value if type(value) is str else canon_text(value))
        if member is not None:
            fact[member] = 1
