"""A reference evaluator for rule conditions, written straight from docs/rules.md (tests only).

It reads `Subject` and `RequestOptions` directly: no facts, no compiler, no engine. Keep it
small and obvious; it is the oracle the durable_rules engine is checked against.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from policyd.domain import RequestOptions, Subject
from policyd.rules.condition import All, AnyOf, Cmp, Condition, Not, as_number, canon_text
from policyd.rules.model import AccessPackage
from policyd.rules.timing import parse_duration

ORDER: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
LOWER_CASED = frozenset({"subject.email", "subject.domain", "subject.type"})
SUBJECT_TEXT = {
    "subject.id": lambda s: s.id,
    "subject.email": lambda s: s.email.strip() if s.email else None,  # trimmed, like the domain
    "subject.domain": lambda s: s.domain,
    "subject.type": lambda s: str(s.type),
    "subject.manager": lambda s: s.manager,
    "subject.organization": lambda s: s.organization,
    "subject.department": lambda s: s.department,
    "subject.jobTitle": lambda s: s.job_title,
    "subject.employeeType": lambda s: s.employee_type,
}
ATTRIBUTE = "subject.attributes."
ANSWER = "answers."


def holds(tree: Condition, subject: Subject, request: RequestOptions, now: datetime) -> bool:
    """Whether `tree` holds for this subject, request and moment."""
    if isinstance(tree, All):
        return all(holds(item, subject, request, now) for item in tree.items)
    if isinstance(tree, AnyOf):
        return any(holds(item, subject, request, now) for item in tree.items)
    if isinstance(tree, Not):
        return not holds(tree.item, subject, request, now)
    assert isinstance(tree, Cmp)
    return _compare(tree, subject, request, now)


def oracle_matched(
    package: AccessPackage, subject: Subject, request: RequestOptions, now: datetime
) -> set[str]:
    """Ids of the package's rules whose `when` holds."""
    return {rule.id for rule in package.rules if holds(rule.when, subject, request, now)}


def _compare(cmp: Cmp, subject: Subject, request: RequestOptions, now: datetime) -> bool:
    field, op, value = cmp.field, cmp.op, cmp.value
    if field == "now":
        return value.contains(now)
    if field == "request.justification":
        return _has_text(request.justification) == value
    if field == "request.duration":
        seconds = _requested_seconds(request, now)
        if op == "exists":
            return (seconds is not None) == value
        return seconds is not None and ORDER[op](seconds, value)
    if field in ("subject.groups", "subject.packages"):
        raw = subject.groups if field == "subject.groups" else subject.packages
        items = {text for text in (canon_text(v) for v in raw) if text}
        if op == "contains":
            return value in items
        if op == "not_contains":
            return value not in items
        return any(v in items for v in value)  # contains_any
    raw = _answer(request, field) if field.startswith(ANSWER) else _subject_value(subject, field)
    if op in ORDER:
        number = as_number(raw)
        return number is not None and ORDER[op](number, value)
    text = _text(field, raw)
    if op == "exists":
        return (text is not None) == value
    if op in ("eq", "ne"):
        equal = text is not None and text == _text(field, value)
        return equal if op == "eq" else not equal
    inside = text is not None and text in {_text(field, v) for v in value}
    return inside if op == "in" else not inside


def _subject_value(subject: Subject, field: str) -> Any:
    if field.startswith(ATTRIBUTE):
        return subject.attributes.get(field[len(ATTRIBUTE) :])
    return SUBJECT_TEXT[field](subject)


def _answer(request: RequestOptions, field: str) -> Any:
    """An answer as rules read it: text trimmed (blank is no answer); choices as chosen."""
    value = (request.answers or {}).get(field[len(ANSWER) :])
    if isinstance(value, str) and field != "answers.team":  # team is a choice question
        return value.strip() or None
    return value


def _text(field: str, value: Any) -> str | None:
    """The compared text of a value; empty text counts as no value."""
    text = canon_text(value)
    if not text:
        return None
    return str(text).lower() if field in LOWER_CASED else str(text)


def _has_text(value: str | None) -> bool:
    return value is not None and value.strip() != ""


def _requested_seconds(request: RequestOptions, now: datetime) -> float | None:
    if not request.duration:
        return None
    return ((now + parse_duration(request.duration)) - now).total_seconds()
