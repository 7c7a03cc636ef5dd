"""Field types of rule files: ids, group ids, moments, cron windows, conditions and
references to directory principals."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from marshmallow import ValidationError, fields, validate

from policyd.rules.condition import ConditionError, parse_condition
from policyd.rules.timing import check_decision_time, parse_window, to_utc

SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SLUG_HELP = "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"


class Slug(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not SLUG.match(text):
            raise ValidationError(f"{text!r} is not a valid id ({SLUG_HELP})")
        return text


class GroupId(fields.String):
    """A directory group id as written in the directory (`Group.PaymentsApprovers`)."""

    MAX = 180  # with its rule's prefix, a rule id fits the 200 characters of its columns

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.strip() or len(text) > self.MAX:
            raise ValidationError(f"a group id has 1 to {self.MAX} characters")
        if text.startswith("group:"):
            raise ValidationError(f"write the group id without 'group:' ({text[6:]!r})")
        return text


class Moment(fields.Field):
    """A date (midnight UTC) or an ISO-8601 date-time; without an offset it is UTC. It is
    loaded in UTC, so one that has no UTC form is refused here, not when a decision uses it."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationError(f"{value!r} is not an ISO-8601 date or date-time") from None
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, date):
            moment = datetime.combine(value, time(0, 0), tzinfo=UTC)
        else:
            raise ValidationError(f"{value!r} is not an ISO-8601 date or date-time")
        try:
            return to_utc(moment)
        except ValueError as err:
            raise ValidationError(str(err)) from None


class DecisionTime(Moment):
    """A Moment at which decisions can be made (docs/rules.md, "Time")."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            check_decision_time(moment)
        except ValueError as err:
            raise ValidationError(str(err)) from None
        return moment


class CronWindow(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_window(value)
        except ValueError as err:
            raise ValidationError(str(err)) from None


class ConditionField(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_condition(value)
        except ConditionError as err:
            raise ValidationError(_nest(err.problems)) from None


def _nest(problems: list[tuple[tuple, str]]) -> dict:
    """Turn (path, message) pairs into marshmallow's nested error dict."""
    root: dict[Any, Any] = {}
    for path, message in problems:
        node = root
        for part in path:
            node = node.setdefault(part, {})
        node.setdefault("_schema", []).append(message)
    return root


class Reference(fields.String):
    """A directory principal: `user:<id>` or `group:<id>`, plus named approver kinds."""

    def __init__(self, kinds: tuple[str, ...], noun: str = "approver", **kwargs):
        self.kinds = kinds
        self.noun = noun
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        kind, _, ident = text.partition(":")
        if text in self.kinds or (f"{kind}:<id>" in self.kinds and ident.strip()):
            return text
        raise ValidationError(
            f"unknown {self.noun} kind {text!r}; use one of: {', '.join(self.kinds)}"
        )


def references(kinds: tuple[str, ...], noun: str = "approver", **kwargs) -> fields.List:
    """A non-empty list of references of the given kinds."""
    return fields.List(Reference(kinds, noun), validate=validate.Length(min=1), **kwargs)


def unique_ids(items: list) -> None:
    """Refuse a list whose items repeat an id."""
    ids = [item.id for item in items]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValidationError(f"duplicate id(s): {', '.join(repeated)}")
