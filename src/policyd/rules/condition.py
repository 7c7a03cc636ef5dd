"""The condition language of rule files: fields, operators and the parsed tree (the time
values it compares live in rules/timing.py)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any

from policyd.rules.timing import duration_seconds, ever_fires, parse_window

ATTRIBUTE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# A question id: a stable slug that is also a fact key (see rules/question.py).
QUESTION_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ANSWERS = "answers."


class Kind(Enum):
    TEXT = "text"  # compared as text
    SCALAR = "scalar"  # text for equality, number for ordering
    LIST = "list"  # a set of text values
    DURATION = "duration"  # seconds, written as ISO-8601 durations
    PRESENCE = "presence"  # only `exists`
    WINDOW = "window"  # `now` within a cron window


OPERATORS: dict[Kind, frozenset[str]] = {
    Kind.TEXT: frozenset({"eq", "ne", "in", "not_in", "exists"}),
    Kind.SCALAR: frozenset({"eq", "ne", "in", "not_in", "lt", "le", "gt", "ge", "exists"}),
    Kind.LIST: frozenset({"contains", "not_contains", "contains_any"}),
    Kind.DURATION: frozenset({"lt", "le", "gt", "ge", "exists"}),
    Kind.PRESENCE: frozenset({"exists"}),
    Kind.WINDOW: frozenset({"within"}),
}

# The fields a condition may name; subject.attributes.<key> is added by `field_kind`.
FIELDS: dict[str, Kind] = {
    "subject.id": Kind.TEXT,
    "subject.email": Kind.TEXT,
    "subject.domain": Kind.TEXT,
    "subject.type": Kind.TEXT,
    "subject.manager": Kind.TEXT,
    "subject.organization": Kind.TEXT,
    "subject.department": Kind.TEXT,
    "subject.jobTitle": Kind.TEXT,
    "subject.employeeType": Kind.TEXT,
    "subject.groups": Kind.LIST,
    "subject.packages": Kind.LIST,
    "request.duration": Kind.DURATION,
    "request.justification": Kind.PRESENCE,
    "now": Kind.WINDOW,
}
CASE_INSENSITIVE = frozenset({"subject.email", "subject.domain", "subject.type"})
COMBINATORS = frozenset({"all", "any", "not"})


@dataclass(frozen=True)
class Cmp:
    """`field op value`; values are already normalised (text, tuple of text, seconds)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Cmp | All | AnyOf | Not
ALWAYS = All(())


def field_kind(name: str) -> Kind | None:
    if name in FIELDS:
        return FIELDS[name]
    prefix = "subject.attributes."
    if name.startswith(prefix) and ATTRIBUTE_KEY.match(name[len(prefix) :]):
        return Kind.SCALAR
    if name.startswith(ANSWERS) and QUESTION_ID.match(name[len(ANSWERS) :]):
        return Kind.SCALAR  # text for equality, number for ordering, like attributes
    return None


def canon_text(value: Any) -> str | None:
    """The text form used for every equality comparison, or None for no value.

    Text compares exactly; numbers by value (1, 1.0 and "1" are all "1"); booleans as
    true/false; dates in ISO form.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, date):
        return value.isoformat()
    return None


def _looks_numeric(text: str) -> bool:
    return bool(re.fullmatch(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*", text))


def as_number(value: Any) -> float | None:
    """The number a value stands for, for lt/le/gt/ge; None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and _looks_numeric(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


class ConditionError(Exception):
    """Problems in one condition tree, each with its key path inside the tree."""

    def __init__(self, problems: list[tuple[tuple, str]]):
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


def parse_condition(raw: Any, packages: frozenset[str] | None = None) -> Condition:
    """Parse a `when:` mapping into a condition tree.

    Args:
        raw: the YAML value.
        packages: known package ids; `subject.packages` values are checked against them
            later by the loader, so None skips that here.

    Raises:
        ConditionError: with every problem found.
    """
    problems: list[tuple[tuple, str]] = []
    tree = _parse(raw, (), problems)
    if problems:
        raise ConditionError(problems)
    return tree


def _parse(raw: Any, path: tuple, problems: list) -> Condition:
    if not isinstance(raw, dict) or not raw:
        problems.append((path, "a condition is a mapping such as {subject.type: member}"))
        return ALWAYS
    parts: list[Condition] = []
    for key, value in raw.items():
        here = (*path, key)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                problems.append((here, f"`{key}` takes a non-empty list of conditions"))
                continue
            items = tuple(_parse(item, (*here, i), problems) for i, item in enumerate(value))
            parts.append(All(items) if key == "all" else AnyOf(items))
        elif key == "not":
            parts.append(Not(_parse(value, here, problems)))
        else:
            parts.extend(_parse_field(key, value, here, problems))
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _parse_field(name: str, spec: Any, path: tuple, problems: list) -> list[Condition]:
    kind = field_kind(name)
    if kind is None:
        problems.append((path, f"unknown field {name!r}; see docs/rules.md for the fields"))
        return []
    if not isinstance(spec, dict):
        if kind in (Kind.TEXT, Kind.SCALAR) and not isinstance(spec, list | dict):
            spec = {"eq": spec}
        elif kind is Kind.LIST and not isinstance(spec, list | dict):
            spec = {"contains": spec}
        else:
            problems.append((path, f"give {name} an operator, e.g. {{{_example(kind)}}}"))
            return []
    if not spec:
        problems.append((path, "an operator is missing"))
        return []
    out: list[Condition] = []
    for op, value in spec.items():
        here = (*path, op)
        if op not in OPERATORS[kind]:
            allowed = ", ".join(sorted(OPERATORS[kind]))
            problems.append((here, f"unknown operator {op!r} for {name}; use one of: {allowed}"))
            continue
        try:
            out.append(Cmp(name, op, _normalise(name, kind, op, value)))
        except ValueError as err:
            problems.append((here, str(err)))
    return out


def _example(kind: Kind) -> str:
    return {
        Kind.LIST: "contains: Group.Name",
        Kind.DURATION: "le: P30D",
        Kind.PRESENCE: "exists: true",
        Kind.WINDOW: 'within: "* 8-17 * * 1-5"',
    }.get(kind, "eq: value")


def _normalise(name: str, kind: Kind, op: str, value: Any) -> Any:
    if op == "exists":
        if not isinstance(value, bool):
            raise ValueError("exists takes true or false")
        return value
    if op == "within":
        window = parse_window(value)
        if not ever_fires(window):
            raise ValueError(f"cron {window.cron!r} never fires, so the window never holds")
        return window
    if op in ("lt", "le", "gt", "ge"):
        if kind is Kind.DURATION:
            return duration_seconds(value)
        number = as_number(value)
        if number is None:
            raise ValueError(f"{op} compares numbers; {value!r} is not a number")
        return number
    if op in ("in", "not_in", "contains_any"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"{op} takes a non-empty list")
        return tuple(_text(name, item) for item in value)
    return _text(name, value)


def _text(name: str, value: Any) -> str:
    if isinstance(value, list | dict) or value is None:
        raise ValueError(f"expected a single value, got {value!r}")
    text = canon_text(value)
    if text is None or text == "":
        raise ValueError(f"expected a non-empty value, got {value!r}")
    if name in CASE_INSENSITIVE:
        text = text.lower()
    if name == "subject.type" and text not in ("member", "guest"):
        raise ValueError(f"subject.type is member or guest, not {value!r}")
    return text


def referenced_packages(tree: Condition) -> list[str]:
    """Package ids named by `subject.packages` comparisons, for reference checks."""
    found: list[str] = []
    for node in walk(tree):
        if isinstance(node, Cmp) and node.field == "subject.packages":
            found.extend(node.value if isinstance(node.value, tuple) else [node.value])
    return found


def referenced_answers(tree: Condition) -> list[str]:
    """Question ids named by `answers.<id>` comparisons, for reference checks."""
    return [
        node.field[len(ANSWERS) :]
        for node in walk(tree)
        if isinstance(node, Cmp) and node.field.startswith(ANSWERS)
    ]


def walk(tree: Condition):
    yield tree
    if isinstance(tree, All | AnyOf):
        for item in tree.items:
            yield from walk(item)
    elif isinstance(tree, Not):
        yield from walk(tree.item)
