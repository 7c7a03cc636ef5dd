"""The condition language of rule files: fields, operators and the parsed tree."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import isodate
from croniter import CroniterError, croniter

ATTRIBUTE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# A question id: a stable slug that is also a fact key (see rules/question.py).
QUESTION_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ANSWERS = "answers."

# Decisions are made at times in this range: croniter matches cron windows exactly only
# until about 2250 (it works with float timestamps), and a lifetime counted from such a time
# (no duration is longer than LONGEST_YEARS) stays far from the end of datetime (9999).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
LONGEST_YEARS = 1000  # generous: published versions may say P999Y for "forever"


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
class Window:
    """A cron expression whose matching minutes form a time window."""

    cron: str
    timezone: str = "UTC"

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        return bool(croniter.match(self.cron, local))


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
