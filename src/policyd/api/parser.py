"""Request parsing: the one bounded JSON reader through which webargs reads every body.

A body that is not JSON, not UTF-8, nested past MAX_DEPTH or holding an integer longer than
Python converts is refused the same way on every route: 400 naming `body`, or, for the
integer, 422 naming its field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import flask
from flask_smorest import abort
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.fields import Field
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from policyd.rules.inputs import TooManyDigits

MAX_DEPTH = 32  # arrays and objects within one another in a JSON body


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


_UNSUPPORTED_HOOKS = (PRE_LOAD, VALIDATES, VALIDATES_SCHEMA)


class SchemaLoader:
    """`schema.load(data)` with marshmallow's per-call bookkeeping precomputed once.

    The fields judge every value as `load` has them do (`Field.deserialize`: the same checks
    and messages); what is done once here is the walk around them: each field's data key,
    attribute and default, the set of known keys, and the post_load hooks, for this schema
    and the nested schemas of its Nested fields. A load with errors raises ValidationError
    with `load`'s messages. A schema using what this does not precompute (pre_load, validators
    on the schema, `many`, partial loading, INCLUDE) is loaded by `schema.load` itself.
    """

    def __init__(self, schema: Schema):
        self.schema = schema
        self.plain = _precomputable(schema)
        self.type_error = schema.error_messages["type"]
        self.unknown_error = schema.error_messages["unknown"]
        self.raise_unknown = schema.unknown == RAISE
        # (data key, attribute, field, nested loader, what a missing value loads to: the
        # "required" error or the default, or nothing)
        self.fields: list[tuple[str, str, Field, SchemaLoader | None, list[str] | None, Any]] = []
        for name, field in schema.load_fields.items():
            key = field.data_key if field.data_key is not None else name
            nested = None
            if isinstance(field, fields.Nested) and _plain_nested(field):
                nested = SchemaLoader(field.schema)
            required = field.make_error("required").messages if field.required else None
            self.fields.append(
                (key, field.attribute or name, field, nested, required, field.load_default)
            )
        self.keys = frozenset(key for key, *_ in self.fields)
        self.post_load = [getattr(schema, name) for name, _many, _kw in schema._hooks[POST_LOAD]]

    def __call__(self, data: Any) -> Any:
        if not self.plain:
            return self.schema.load(data)
        if type(data) is not dict and not isinstance(data, Mapping):
            raise ValidationError({"_schema": [self.type_error]}, data=data)
        result: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for key, attribute, field, nested, required, default in self.fields:
            value = data.get(key, missing)
            if value is missing:  # as Field.deserialize has it, without the call
                if required is not None:
                    errors[key] = required
                elif default is not missing:
                    result[attribute] = default() if callable(default) else default
                continue
            try:
                if nested is None or value is None:
                    value = field.deserialize(value, key, data)
                else:
                    value = nested(value)
            except ValidationError as err:
                errors[key] = err.messages
                continue
            if value is not missing:
                result[attribute] = value
        if self.raise_unknown and not data.keys() <= self.keys:
            for key in data.keys() - self.keys:
                errors[key] = [self.unknown_error]
        if errors:
            raise ValidationError(errors, data=data, valid_data=result)
        try:
            for hook in self.post_load:
                result = hook(result, many=False, partial=None, unknown=self.schema.unknown)
        except ValidationError as err:
            raise ValidationError(err.normalized_messages(), data=data) from err
        return result


def _precomputable(schema: Schema) -> bool:
    hooks = schema._hooks
    return (
        not schema.many
        and not schema.partial
        and schema.unknown in (RAISE, EXCLUDE)
        and not any(hooks[tag] for tag in _UNSUPPORTED_HOOKS)
        and all(not many and not kw.get("pass_original") for _, many, kw in hooks[POST_LOAD])
    )


def _plain_nested(field: fields.Nested) -> bool:
    """A Nested field that only loads its schema (no own options, validators or hooks)."""
    return (
        not field.many
        and field.unknown is None
        and not field.only
        and not field.exclude
        and not field.validators
        and not field.pre_load
        and not field.post_load
        and _precomputable(field.schema)
    )
