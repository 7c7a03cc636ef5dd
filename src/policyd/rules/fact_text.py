"""Write a decision's fact straight as the JSON text durable_rules reads, one writer per bundle.

`build_fact` makes a dict that the engine then serialises; on the small example packages those
two steps were a sixth of a decision's instructions. A writer works out once per compiled bundle
which keys the fact can hold and their encoded names, and writes the text of exactly
`json.dumps(build_fact(...))`, key for key in the same order (tests/rules/test_fact_text.py
checks that on generated subjects), so the match memo keys on the same text either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from json.encoder import encode_basestring_ascii as _quote
from typing import Any

from policyd.domain import RequestOptions, Subject
from policyd.rules.compiler import FALSE, MARKER, TEXT_PREFIX, TRUE, CompiledBundle, number_value
from policyd.rules.condition import as_number, canon_text
from policyd.rules.facts import SENTINEL, _plan, _within, build_fact, requested_seconds

_EMPTY_LIST = "[" + _quote(SENTINEL)
_TRUE = _quote(TRUE)
_FALSE = _quote(FALSE)


def _key(key: str) -> str:
    """`, "key": ` as json.dumps writes it between two items."""
    return ", " + _quote(key) + ": "


def _scalar_keys(keys_of: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    return {name: (_key(text), _key(number)) for name, (text, number) in keys_of.items()}


class FactWriter:
    """`write(subject, request, now)` is `json.dumps(build_fact(compiled, ...))`, made without
    the dict. A bundle in which two fields share one fact key (a dict keeps the last value in
    the first one's place) is written through `build_fact` instead."""

    __slots__ = (
        "answers",
        "attributes",
        "compiled",
        "duration",
        "groups",
        "head",
        "justification",
        "members",
        "packages",
        "shared_keys",
        "texts",
        "windows",
    )

    def __init__(self, compiled: CompiledBundle):
        plan = _plan(compiled.fields)
        self.compiled = compiled
        self.head = "{" + _quote(MARKER) + ": 1"
        self.texts = tuple((_key(key), read) for key, read in plan.texts)
        self.attributes = _scalar_keys(plan.attributes)
        self.groups = _key(plan.groups) if plan.groups else None
        self.packages = _key(plan.packages) if plan.packages else None
        self.members = {
            name: {value: _key(key) + "1" for value, key in keys_of.items()}
            for name, keys_of in compiled.members.items()
        }
        self.answers = _scalar_keys(plan.answers)
        self.duration = _key(plan.duration) if plan.duration else None
        self.justification = _key(plan.justification) if plan.justification else None
        self.windows = tuple((window, _key(key)) for window, key in compiled.windows.items())
        keys = [MARKER, *(key for key, _ in plan.texts), *compiled.windows.values()]
        scalars = (*plan.attributes.values(), *plan.answers.values())
        keys += [key for pair in scalars for key in pair]
        single = (plan.groups, plan.packages, plan.duration, plan.justification)
        keys += [key for key in single if key]
        keys += [key for keys_of in compiled.members.values() for key in keys_of.values()]
        self.shared_keys = len(set(keys)) != len(keys)

    def write(self, subject: Subject, request: RequestOptions, now: datetime) -> str:
        """The fact's JSON text (see build_fact for what each key holds)."""
        if self.shared_keys:
            return json.dumps(build_fact(self.compiled, subject, request, now))
        parts = [self.head]
        for key, read in self.texts:
            text = read(subject)
            if type(text) is not str:
                text = canon_text(text)
            if text:
                parts.append(key + _quote(TEXT_PREFIX + text))
        if self.attributes:
            _put_scalars(parts, self.attributes, subject.attributes, False)
        if self.groups:
            self._put_list(parts, self.groups, subject.groups, "subject.groups")
        if self.packages:
            self._put_list(parts, self.packages, subject.packages, "subject.packages")
        if self.answers and request.answers:
            _put_scalars(parts, self.answers, request.answers, True)
        if self.duration:
            seconds = requested_seconds(request, now)
            if seconds is not None:
                parts.append(self.duration + str(number_value(seconds)))
        if self.justification and request.has_justification:
            parts.append(self.justification + _TRUE)
        if self.windows:
            minute = now.replace(second=0, microsecond=0)
            for window, key in self.windows:
                parts.append(key + (_TRUE if _within(window, minute) else _FALSE))
        parts.append("}")
        return "".join(parts)

    def _put_list(self, parts: list[str], key: str, values: Any, field: str) -> None:
        members = self.members.get(field)
        if members is None:
            items = sorted({TEXT_PREFIX + text for value in values if (text := _text(value))})
            parts.append(key + ", ".join([_EMPTY_LIST, *map(_quote, items)]) + "]")
            return
        held = []
        for value in values:
            key = members.get(value if type(value) is str else canon_text(value))
            if key is not None:
                held.append(key)
        # A subject's values may repeat once made text (1 and "1"); each key is written once.
        parts.extend(dict.fromkeys(held) if len(held) > 1 else held)


def _text(value: Any) -> str | None:
    return value if type(value) is str else canon_text(value)


def _put_scalars(
    parts: list[str], keys_of: dict[str, tuple[str, str]], values: Any, by_key: bool
) -> None:
    """Text and number keys, in the order of the bundle's keys (answers) or of the subject's
    values (attributes), as build_fact puts them."""
    pairs = ((name, values.get(name)) for name in keys_of) if by_key else values.items()
    for name, value in pairs:
        keys = keys_of.get(name)
        if keys is None:
            continue
        text = _text(value)
        if text:
            parts.append(keys[0] + _quote(TEXT_PREFIX + text))
        number = as_number(value)
        if number is not None:
            parts.append(keys[1] + str(number_value(number)))


def fact_writer(compiled: CompiledBundle) -> Callable[[Subject, RequestOptions, datetime], str]:
    """The bound `write` of a new FactWriter for `compiled`."""
    return FactWriter(compiled).write
