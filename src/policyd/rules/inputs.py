"""Schemas for decision inputs written by people or apps: subjects and request options."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from policyd.domain import RequestOptions, Subject, UserType
from policyd.rules.condition import parse_duration


class _DurationText(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            parse_duration(text)
        except ValueError as err:
            raise ValidationError(str(err)) from None
        return text


class _Scalar(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if value is None or isinstance(value, str | int | float | bool):
            return value
        raise ValidationError("attribute values are text, numbers or true/false")


class SubjectSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(required=True, validate=validate.Length(min=1))
    email = fields.String(allow_none=True)
    type = fields.Enum(UserType, by_value=True, load_default=UserType.MEMBER)
    groups = fields.List(fields.String(validate=validate.Length(min=1)), load_default=())
    manager = fields.String(allow_none=True)
    organization = fields.String(allow_none=True)
    packages = fields.List(fields.String(validate=validate.Length(min=1)), load_default=())
    department = fields.String(allow_none=True)
    job_title = fields.String(data_key="jobTitle", allow_none=True)
    employee_type = fields.String(data_key="employeeType", allow_none=True)
    attributes = fields.Dict(keys=fields.String(), values=_Scalar(), load_default=dict)

    @post_load
    def make(self, data: dict[str, Any], **kwargs) -> Subject:
        data["groups"] = frozenset(data["groups"])
        data["packages"] = frozenset(data["packages"])
        return Subject(**data)


class RequestSchema(Schema):
    class Meta:
        unknown = RAISE

    duration = _DurationText(allow_none=True)
    justification = fields.String(allow_none=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs) -> RequestOptions:
        return RequestOptions(**data)
