"""Schemas for decision inputs written by people or apps: subjects and request options.

The field types here are shared by every input schema (the HTTP API's too), so a value is
refused in one place, with its field named, before any database sees it: SQLite would store
text with NUL characters, NaN and infinities that PostgreSQL refuses, and the limits keep one
caller from storing megabytes.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from policyd.domain import RequestOptions, Subject, UserType
from policyd.rules.timing import parse_duration

MAX_ID = 200  # ids: users, groups, packages, organisations (the id columns' length)
MAX_NAME = 200  # names and short texts: display names, department, job title
MAX_TEXT = 2000  # justifications and comments
MAX_ATTRIBUTES = 100  # attributes of one subject or user
MAX_ATTRIBUTE_TEXT = 1000  # an attribute's text value
MAX_ITEMS = 500  # groups or packages sent with one subject
MAX_NUMBER = sys.float_info.max  # numbers a double holds: the rules compare them as doubles
MAX_DIGITS = 4300  # the most digits Python turns into an integer (sys.int_info)

# Text the database can store on every backend: no NUL character (PostgreSQL refuses it).
# Lone surrogates (which JSON's \ud800 escapes can make) are refused by `Text` as well; a
# pattern cannot name them, and no generator writes them.
NO_NUL = "^[^\\x00]*$"
# ISO-8601 durations as the API takes them: whole numbers without leading zeros, so every
# value the pattern admits is longer than zero and below parse_duration's 1,000 years (all
# parts at their largest add up to about 810 years).
DURATION_PATTERN = (
    "^P(?!T?$)(?:[1-9][0-9]{0,1}Y)?(?:[1-9][0-9]{0,2}M)?(?:[1-9][0-9]{0,3}W)?"
    "(?:[1-9][0-9]{0,4}D)?(?:T(?!$)(?:[1-9][0-9]{0,5}H)?(?:[1-9][0-9]{0,6}M)?"
    "(?:[1-9][0-9]{0,8}S)?)?$"
)

_DURATION = re.compile(DURATION_PATTERN)


class TooManyDigits:
    """A JSON integer longer than Python converts; kept so a field can refuse it by name."""

    def __init__(self, digits: int):
        self.digits = digits


def check_text(value: str) -> str:
    """`value` if every backend can store it.

    Raises:
        ValidationError: it holds a NUL character or a lone surrogate.
    """
    if "\x00" in value:
        raise ValidationError("text may not contain the NUL character")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValidationError("text must be valid Unicode (no lone surrogates)") from None
    return value


class Text(fields.String):
    """A string of at most `size` characters that every database stores as sent."""

    def __init__(self, size: int | None = MAX_NAME, *, min_size: int = 0, **kwargs):
        metadata = {"pattern": NO_NUL, **kwargs.pop("metadata", {})}
        validators = []
        if size is not None or min_size:
            validators.append(validate.Length(min=min_size or None, max=size))
        super().__init__(validate=validators, metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return check_text(super()._deserialize(value, attr, data, **kwargs))


def Id(**kwargs) -> Text:
    """An id: 1 to MAX_ID characters."""
    return Text(MAX_ID, min_size=1, **kwargs)


class Duration(Text):
    """An ISO-8601 duration such as PT8H or P90D, loaded as parse_duration's value, or kept as
    written with `as_text`.

    Inputs of the API take DURATION_PATTERN's form (whole numbers without leading zeros);
    rule files (`any_form`) take every duration parse_duration reads.
    """

    def __init__(self, *, as_text: bool = False, any_form: bool = False, **kwargs):
        metadata = {
            "pattern": DURATION_PATTERN,
            "maxLength": 50,
            "example": "PT8H",
            **kwargs.pop("metadata", {}),
        }
        # No length validator: it would run on the loaded timedelta; the pattern bounds it.
        super().__init__(None, metadata=metadata, **kwargs)
        self.as_text, self.any_form = as_text, any_form

    def _deserialize(self, value, attr, data, **kwargs):
        if self.any_form:  # a rule file's value is whatever YAML made of it
            try:
                parsed = parse_duration(value)
            except ValueError as err:
                raise ValidationError(str(err)) from None
            return value if self.as_text else parsed
        text = check_duration(super()._deserialize(value, attr, data, **kwargs))
        return text if self.as_text else parse_duration(text)


def check_duration(text: str) -> str:
    """`text` if it is a duration as the API takes them (DURATION_PATTERN, parse_duration).

    Raises:
        ValidationError: otherwise, saying why.
    """
    if len(text) <= 50:  # parse_duration's own reason first: "at most 1000 years", ...
        try:
            parse_duration(text)
        except ValueError as err:
            raise ValidationError(str(err)) from None
    if _DURATION.match(text) is None:
        raise ValidationError(
            f"{text[:60]!r} is not an ISO-8601 duration such as P90D or PT8H "
            "(whole numbers without leading zeros)"
        )
    return text


def check_scalar(value: Any) -> Any:
    """An attribute value every backend stores and the rules compare alike.

    Raises:
        ValidationError: not text, a finite number or true/false.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_TEXT:
            raise ValidationError(f"text values have at most {MAX_ATTRIBUTE_TEXT} characters")
        return check_text(value)
    if isinstance(value, int):
        if -MAX_NUMBER <= value <= MAX_NUMBER:
            return value
        raise ValidationError("numbers are at most about 1.8e308 in size")
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise ValidationError("numbers must be finite (no NaN or infinity)")
    if isinstance(value, TooManyDigits):
        raise ValidationError(f"numbers have at most {MAX_DIGITS} digits")
    raise ValidationError("attribute values are text, numbers or true/false")


class _Scalar(fields.Field):
    def __init__(self, **kwargs):
        one_of = [
            {"type": "string", "maxLength": MAX_ATTRIBUTE_TEXT, "pattern": NO_NUL},
            {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER},
            {"type": "boolean"},
        ]
        super().__init__(metadata={"anyOf": one_of}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        return check_scalar(value)


def at_most(count: int, what: str):
    """A validator: at most `count` entries (a Dict's Length would be documented as the
    length of a string)."""

    def check(value) -> None:
        if len(value) > count:
            raise ValidationError(f"at most {count} {what}")

    return check


def Attributes(**kwargs) -> fields.Dict:
    """Attribute names -> text, finite numbers or true/false; at most MAX_ATTRIBUTES."""
    return fields.Dict(
        # Any text but NUL: a rule reads only keys of its own form (rules/condition.py), and
        # the number of attributes and the body limit bound their size.
        keys=Text(None),
        values=_Scalar(allow_none=kwargs.pop("values_allow_none", False)),
        validate=at_most(MAX_ATTRIBUTES, "attributes"),
        metadata={"maxProperties": MAX_ATTRIBUTES},
        **kwargs,
    )


MAX_ANSWERS = 20  # answers in one request (rules/question.py: MAX_QUESTIONS)


def Answers(**kwargs) -> fields.Dict:
    """Question ids -> answers (text, numbers); each is checked against its package's
    question when the decision is made (rules/question.py)."""
    return fields.Dict(
        keys=Text(64),
        values=_Scalar(allow_none=True),
        validate=at_most(MAX_ANSWERS, "answers"),
        metadata={"maxProperties": MAX_ANSWERS, **kwargs.pop("metadata", {})},
        **kwargs,
    )


def Names(**kwargs) -> fields.List:
    """A list of at most MAX_ITEMS ids."""
    return fields.List(Id(), validate=validate.Length(max=MAX_ITEMS), **kwargs)


class SubjectSchema(Schema):
    class Meta:
        unknown = RAISE

    id = Id(required=True)
    email = Text(320, allow_none=True)
    type = fields.Enum(UserType, by_value=True, load_default=UserType.MEMBER)
    groups = Names(load_default=())
    manager = Text(MAX_ID, allow_none=True)
    organization = Text(MAX_ID, allow_none=True)
    packages = Names(load_default=())
    department = Text(allow_none=True)
    job_title = Text(data_key="jobTitle", allow_none=True)
    employee_type = Text(data_key="employeeType", allow_none=True)
    attributes = Attributes(load_default=dict)

    @post_load
    def make(self, data: dict[str, Any], **kwargs) -> Subject:
        data["groups"] = frozenset(data["groups"])
        data["packages"] = frozenset(data["packages"])
        return Subject(**data)


class UserFieldsSchema(Schema):
    """A directory user's fields, as `PUT /v1/users/<id>` and a directory import take them."""

    class Meta:
        unknown = RAISE

    email = fields.Email(
        allow_none=True,
        validate=validate.Length(max=320),
        metadata={"description": "an e-mail address"},
    )
    display_name = Text(allow_none=True)
    type = fields.String(validate=validate.OneOf([t.value for t in UserType]))
    manager_id = Text(MAX_ID, allow_none=True, metadata={"description": "a user in the directory"})
    organization_id = Text(MAX_ID, allow_none=True)
    department = Text(allow_none=True)
    job_title = Text(allow_none=True)
    employee_type = Text(100, allow_none=True)
    attributes = Attributes()


class RequestSchema(Schema):
    class Meta:
        unknown = RAISE

    duration = Duration(as_text=True, allow_none=True)
    justification = Text(MAX_TEXT, allow_none=True)
    answers = Answers(allow_none=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs) -> RequestOptions:
        return RequestOptions(**data)
