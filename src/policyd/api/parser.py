"""Request parsing: one bounded JSON reader, and shortcuts that let plain bodies skip marshmallow.

Every JSON body the API reads (webargs' and the decision hot path's) goes through `load_json`,
so a body that is not JSON, not UTF-8, nested past MAX_DEPTH or holding an integer longer than
Python converts is refused the same way everywhere: 400 naming `body`, or, for the integer,
422 naming its field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import flask
from flask_smorest import abort
from marshmallow import Schema
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from policyd.domain import RequestOptions, Subject, UserType
from policyd.rules.condition import parse_duration
from policyd.rules.inputs import (
    _DURATION,
    MAX_ATTRIBUTE_TEXT,
    MAX_ATTRIBUTES,
    MAX_ID,
    MAX_ITEMS,
    MAX_NAME,
    MAX_NUMBER,
    MAX_TEXT,
    TooManyDigits,
)

MAX_DEPTH = 32  # arrays and objects within one another in a JSON body
MAX_BODY_TEXT = 1 << 62  # no limit but the body's

Shortcut = Callable[[Any], Any]  # a JSON body -> the schema's result, or None: not sure


class BodyError(ValueError):
    """The body is not JSON policyd reads; the message says why."""


def load_json(data: bytes) -> Any:
    """The JSON value of a request body.

    Integers longer than Python converts become TooManyDigits, for the schema to refuse by
    field. NaN and infinities are read as floats; the schemas refuse them by field too.

    Raises:
        BodyError: not UTF-8, not JSON, or nested deeper than MAX_DEPTH.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BodyError(f"the body is not UTF-8 (byte {err.start})") from None
    # A body with fewer brackets than the limit cannot be nested past it: the common case
    # costs two byte counts, not a walk.
    nested = data.count(b"[") + data.count(b"{") > MAX_DEPTH
    try:
        value = json.loads(text)
    except RecursionError:
        raise BodyError(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as err:
        raise BodyError(f"the body is not valid JSON: {err}") from None
    except ValueError:  # an integer with more digits than Python converts
        value = json.loads(text, parse_int=_int)
    if nested and _depth(value) > MAX_DEPTH:
        raise BodyError(f"the body is nested deeper than {MAX_DEPTH} levels")
    return value


def _int(text: str) -> int | TooManyDigits:
    try:
        return int(text)
    except ValueError:  # past sys.get_int_max_str_digits()
        return TooManyDigits(len(text.lstrip("-")))


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (without recursion)."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:  # past the limit the answer is known
            level.extend((child, depth + 1) for child in item)
    return deepest


class PolicydParser(FlaskParser):
    """webargs' Flask parser reading JSON bodies with `load_json`."""

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        try:
            return load_json(data)
        except BodyError as err:
            abort(400, message=str(err), messages={"json": [str(err)]})


class ShortcutParser(PolicydParser):
    """A parser that first offers a JSON body to its schema's shortcut, if any.

    A shortcut returns exactly what the schema's `load` would for input it fully understands,
    and None for anything else. That input then takes the schema's full path, so every error
    (and the OpenAPI document, which never sees the shortcut) stays word for word the same.
    """

    def __init__(self, shortcuts: Mapping[type[Schema], Shortcut]):
        super().__init__()
        self.shortcuts = dict(shortcuts)

    def parse(self, argmap, req=None, *, location=None, **kwargs):
        shortcut = self.shortcuts.get(type(argmap))
        if shortcut is not None and (location or self.location) == "json":
            request = req or flask.request
            if is_json_request(request):
                try:
                    body = load_json(request.get_data(cache=True))
                except BodyError:
                    body = None  # the full path answers it
                result = shortcut(body) if body is not None else None
                if result is not None:
                    return result
        return super().parse(argmap, req, location=location, **kwargs)


_TEXT_FIELDS = {  # SubjectSchema's optional text fields: data key -> (Subject attribute, size)
    "email": ("email", 320),
    "manager": ("manager", MAX_ID),
    "organization": ("organization", MAX_ID),
    "department": ("department", MAX_NAME),
    "jobTitle": ("job_title", MAX_NAME),
    "employeeType": ("employee_type", MAX_NAME),
}
_SUBJECT_KEYS = frozenset({"id", "type", "groups", "packages", "attributes", *_TEXT_FIELDS})
_USER_TYPES = {member.value: member for member in UserType}


def _plain(value: Any, size: int) -> bool:
    """A str of 0 to `size` characters that the Text field takes as it is (no NUL, ASCII or
    valid Unicode); anything doubtful is for marshmallow to judge."""
    if type(value) is not str or len(value) > size or "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _plain_id(value: Any) -> bool:
    return _plain(value, MAX_ID) and value != ""


def _plain_scalar(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return _plain(value, MAX_ATTRIBUTE_TEXT)
    if kind is bool:
        return True
    if kind is int:
        return -MAX_NUMBER <= value <= MAX_NUMBER
    if kind is float:
        return math.isfinite(value)
    return False


def decision_body(body: Any) -> dict[str, Any] | None:
    """DecisionInSchema's result for a plain, valid body; None when marshmallow must judge."""
    if type(body) is not dict or not body.keys() <= {"package", "subject", "request"}:
        return None
    package = body.get("package")
    if not _plain_id(package):
        return None
    subject = _subject(body.get("subject"))
    if subject is None:
        return None
    request = body.get("request")
    if request is not None:
        request = _request(request)
        if request is None:
            return None
    return {"package": package, "subject": subject, "request": request}


def _subject(data: Any) -> Subject | None:
    if type(data) is not dict or not data.keys() <= _SUBJECT_KEYS:
        return None
    subject_id = data.get("id")
    if not _plain_id(subject_id):
        return None
    values: dict[str, Any] = {"id": subject_id}
    for key, (name, size) in _TEXT_FIELDS.items():
        if key in data:
            value = data[key]
            if value is not None and not _plain(value, size):
                return None
            values[name] = value
    if "type" in data:
        user_type = data["type"]
        if type(user_type) is not str or user_type not in _USER_TYPES:
            return None
        values["type"] = _USER_TYPES[user_type]
    for key in ("groups", "packages"):
        if key in data:
            items = data[key]
            if (
                type(items) is not list
                or len(items) > MAX_ITEMS
                or not all(_plain_id(i) for i in items)
            ):
                return None
            values[key] = frozenset(items)
    if "attributes" in data:
        attributes = data["attributes"]
        # Not None: the value field does not allow it, whatever its own check would say.
        if (
            type(attributes) is not dict
            or len(attributes) > MAX_ATTRIBUTES
            or not all(
                _plain(key, MAX_BODY_TEXT) and _plain_scalar(value)
                for key, value in attributes.items()
            )
        ):
            return None
        values["attributes"] = dict(attributes)
    return Subject(**values)


def _request(data: Any) -> RequestOptions | None:
    if type(data) is not dict or not data.keys() <= {"duration", "justification"}:
        return None
    duration, justification = data.get("duration"), data.get("justification")
    if justification is not None and not _plain(justification, MAX_TEXT):
        return None
    if duration is not None:
        if type(duration) is not str or _DURATION.match(duration) is None:
            return None
        try:
            parse_duration(duration)
        except Exception:  # whatever it is, marshmallow's path reports it
            return None
    return RequestOptions(duration=duration, justification=justification)
