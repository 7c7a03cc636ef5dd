"""Schemas of API tokens and the audit log."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from policyd.api.schemas.base import Cursor, Strict, UtcDateTime
from policyd.rules.inputs import (
    MAX_ID,
    MAX_NAME,
    Duration,
    Id,
    Text,
)


class TokenInSchema(Strict):
    principal = Id(required=True)
    role = fields.String(
        required=True, validate=validate.OneOf(["user", "app", "admin", "auditor"])
    )
    expires_in = Duration(load_default=None, allow_none=True, metadata={"example": "P30D"})
    description = Text(MAX_NAME, load_default=None, allow_none=True)


class TokenOutSchema(Schema):
    id = fields.String()
    principal = fields.String()
    role = fields.String()
    description = fields.String(allow_none=True)
    created_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    token = fields.String(metadata={"description": "shown once, at creation"})


class AuditQuerySchema(Strict):
    after = Cursor()
    object_id = Text(MAX_ID)
    action = Text(MAX_NAME)
    since = UtcDateTime()
    request_id = Text(128, metadata={"description": "the changes one HTTP request made"})


class AuditOutSchema(Schema):
    id = fields.Integer()
    at = fields.DateTime()
    actor = fields.String()
    action = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)
    version = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True, metadata={"description": "its X-Request-ID"})
    prev_hash = fields.String(metadata={"description": "the hash of the record before it"})
    hash = fields.String(metadata={"description": "sha256 of ID:PREV_HASH:CONTENT_DIGEST"})
