"""Request parsing with shortcuts: plain, valid bodies skip marshmallow, everything else doesn't."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import flask
from marshmallow import Schema
from webargs.core import is_json
from webargs.flaskparser import FlaskParser

from policyd.domain import RequestOptions, Subject, UserType
from policyd.rules.condition import parse_duration

Shortcut = Callable[[Any], Any]  # a JSON body -> the schema's result, or None: not sure


class ShortcutParser(FlaskParser):
    """webargs' Flask parser that first offers a JSON body to its schema's shortcut, if any.

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
            if is_json(request.mimetype):
                try:  # as webargs reads a body: UTF-8 only
                    body = json.loads(request.get_data(cache=True).decode("utf-8"))
                except ValueError:
                    body = None
                result = shortcut(body) if body is not None else None
                if result is not None:
                    return result
        return super().parse(argmap, req, location=location, **kwargs)


_TEXT_FIELDS = {  # SubjectSchema's optional text fields: data key -> Subject attribute
    "email": "email",
    "manager": "manager",
    "organization": "organization",
    "department": "department",
    "jobTitle": "job_title",
    "employeeType": "employee_type",
}
_SUBJECT_KEYS = frozenset({"id", "type", "groups", "packages", "attributes", *_TEXT_FIELDS})
_USER_TYPES = {member.value: member for member in UserType}
_SCALARS = (str, int, float, bool)


def decision_body(body: Any) -> dict[str, Any] | None:
    """DecisionInSchema's result for a plain, valid body; None when marshmallow must judge."""
    if type(body) is not dict or not body.keys() <= {"package", "subject", "request"}:
        return None
    package = body.get("package")
    if type(package) is not str or not package:
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
    if type(subject_id) is not str or not subject_id:
        return None
    values: dict[str, Any] = {"id": subject_id}
    for key, name in _TEXT_FIELDS.items():
        if key in data:
            value = data[key]
            if value is not None and type(value) is not str:
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
            if type(items) is not list or not all(type(i) is str and i for i in items):
                return None
            values[key] = frozenset(items)
    if "attributes" in data:
        attributes = data["attributes"]
        # Not None: the value field does not allow it, whatever its own check would say.
        if type(attributes) is not dict or not all(
            type(value) in _SCALARS for value in attributes.values()
        ):
            return None
        values["attributes"] = dict(attributes)
    return Subject(**values)


def _request(data: Any) -> RequestOptions | None:
    if type(data) is not dict or not data.keys() <= {"duration", "justification"}:
        return None
    duration, justification = data.get("duration"), data.get("justification")
    if justification is not None and type(justification) is not str:
        return None
    if duration is not None:
        if type(duration) is not str:
            return None
        try:
            parse_duration(duration)
        except Exception:  # whatever it is, marshmallow's path reports it
            return None
    return RequestOptions(duration=duration, justification=justification)
