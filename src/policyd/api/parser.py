"""Request parsing: the one bounded JSON reader through which webargs reads every body.

A body that is not JSON, not UTF-8, nested past MAX_DEPTH or holding an integer longer than
Python converts is refused the same way on every route: 400 naming `body`, or, for the
integer, 422 naming its field.
"""

from __future__ import annotations

import json
from typing import Any

import flask
from flask_smorest import abort
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
