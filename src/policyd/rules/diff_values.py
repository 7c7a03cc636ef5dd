"""Normalised values for the semantic diff: a plain, JSON-able value per field that is equal
exactly when the meaning is equal, and the field changes between two sets of them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import isodate

from policyd.rules.condition import All, AnyOf, Cmp, Condition, Not
from policyd.rules.timing import Window

# Lists whose order means nothing: any approver of a stage may approve, and so on.
_SETS = frozenset(
    {"approvers", "escalate_to", "owners", "managers", "incompatible_with", "incompatible_groups"}
)
# Model names that differ from the rule-file keys reviewers read.
_KEYS = {"outcome": "decision", "maximum": "max", "minimum": "min"}


@dataclass(frozen=True)
class FieldChange:
    """One field whose normalised value differs; None on a side where it is not set."""

    field: str
    before: Any
    after: Any

    def to_dict(self) -> dict:
        return {"field": self.field, "before": self.before, "after": self.after}


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    names = list(dict.fromkeys([*after, *before]))
    return tuple(
        FieldChange(name, before.get(name), after.get(name))
        for name in names
        if before.get(name) != after.get(name)
    )


def values_of(obj: Any, skip: frozenset[str], order: tuple[str, ...]) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(obj) if f.name not in skip]
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    out = {}
    for name in names:
        value = normalise(getattr(obj, name), set_like=name in _SETS)
        if value is not None and value != []:  # an empty list is the same as none
            out[_key(name)] = value
    return out


def _key(name: str) -> str:
    if name in _KEYS:
        return _KEYS[name]
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def normalise(value: Any, *, set_like: bool = False) -> Any:
    """A plain, JSON-able value that is equal exactly when the meaning is equal: durations in
    ISO-8601, conditions in one canonical form, order-free lists sorted, defaults left out."""
    if isinstance(value, Enum):  # before str: the model's enums are StrEnums
        return value.value
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return int(value) if float(value).is_integer() else value
    if isinstance(value, timedelta | isodate.Duration):
        return isodate.duration_isoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Window):
        return {"cron": value.cron, "timezone": value.timezone}
    if isinstance(value, Cmp | All | AnyOf | Not):
        return condition(value)
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.default is not dataclasses.MISSING and item == f.default:
                continue
            normal = normalise(item, set_like=f.name in _SETS)
            if normal is not None and normal != []:
                out[_key(f.name)] = normal
        return out
    if isinstance(value, tuple | list | frozenset | set):
        items = [normalise(item) for item in value]
        return sorted({_canon(i): i for i in items}.values(), key=_canon) if set_like else items
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    return str(value)


def condition(tree: Condition) -> Any:
    """A `when:` tree in canonical form; None for "always"."""
    tree = _flatten(tree)
    if isinstance(tree, All) and not tree.items:
        return None
    return _render(tree)


def _flatten(tree: Condition) -> Condition:
    """Nested all-in-all and any-in-any merged, duplicates dropped, one item unwrapped."""
    if isinstance(tree, Not):
        inner = _flatten(tree.item)
        return inner.item if isinstance(inner, Not) else Not(inner)
    if isinstance(tree, All | AnyOf):
        kind = type(tree)
        items: list[Condition] = []
        for item in (_flatten(i) for i in tree.items):
            for part in item.items if isinstance(item, kind) else (item,):
                if part not in items:
                    items.append(part)
        if len(items) == 1:
            return items[0]
        return kind(tuple(items))
    return tree


def _render(tree: Condition) -> Any:
    if isinstance(tree, Cmp):
        value = tree.value
        if isinstance(value, tuple):
            value = sorted(set(value))
        elif isinstance(value, Window):
            value = normalise(value)
        elif tree.field == "request.duration" and not isinstance(value, bool):
            value = isodate.duration_isoformat(timedelta(seconds=value))
        else:
            value = normalise(value)
        return {tree.field: {tree.op: value}}
    if isinstance(tree, Not):
        return {"not": _render(tree.item)}
    key = "all" if isinstance(tree, All) else "any"
    return {key: sorted((_render(item) for item in tree.items), key=_canon)}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
