"""Schemas of the directory: users, groups, members and connected organisations."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from policyd.api.schemas.base import Cursor, Strict
from policyd.rules.inputs import (
    MAX_NAME,
    Id,
    Text,
    UserFieldsSchema,
)

MAX_SPONSORS = 100  # domains or sponsors of one connected organisation


def _text(size: int, **kwargs) -> Text:
    return Text(size, allow_none=True, **kwargs)


class UserQuerySchema(Strict):
    after = Cursor()


class UserSchema(UserFieldsSchema):
    """A directory user. PUT sets the fields sent (null clears one) and keeps the others."""

    id = fields.String(dump_only=True)
    manager_external = fields.Boolean(
        load_only=True,
        load_default=False,
        metadata={
            "description": "true: `manager_id` names someone outside the directory (checked "
            "only on this request; not stored)"
        },
    )


class GroupSchema(Strict):
    """A group. PUT sets `display_name` when sent (null clears it); members are separate."""

    id = fields.String(dump_only=True)
    display_name = _text(MAX_NAME)


class MemberSchema(Schema):
    user_id = fields.String()


class OrganizationSchema(Strict):
    """A connected organisation. `proposed` ones are made by requests from guests of unknown
    domains; an admin configures them (`state: configured`, sponsors, domains)."""

    id = fields.String(dump_only=True)
    display_name = Text(MAX_NAME, required=True)
    domains = fields.List(Text(253), validate=validate.Length(max=MAX_SPONSORS))
    internal_sponsors = fields.List(Id(), validate=validate.Length(max=MAX_SPONSORS))
    external_sponsors = fields.List(Id(), validate=validate.Length(max=MAX_SPONSORS))
    state = fields.String(validate=validate.OneOf(["configured", "proposed"]))


class OrganizationQuerySchema(Strict):
    state = fields.String(validate=validate.OneOf(["configured", "proposed"]))


class OrganizationRemovedSchema(Schema):
    """What removing a connected organisation ended."""

    guests = fields.Integer()
    assignments_ended = fields.Integer()
    requests_canceled = fields.Integer()
    requests_reassigned = fields.Integer()
    requests_escalated = fields.Integer()
    requests_denied = fields.Integer()
