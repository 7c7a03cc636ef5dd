"""Schemas of assignments: listing them, direct assignment and extension."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from policyd.api.schemas.base import Cursor, Strict, UtcDateTime
from policyd.domain import AssignmentState
from policyd.rules.inputs import (
    MAX_ID,
    MAX_TEXT,
    Duration,
    Id,
    Text,
)

# The states a list may be filtered by (docs/lifecycle.md); any other value is a 422.
ASSIGNMENT_STATES = tuple(state.value for state in AssignmentState)


class AssignmentOutSchema(Schema):
    id = fields.String()
    subject_id = fields.String()
    package = fields.String()
    state = fields.String()
    request_id = fields.String()
    decision_id = fields.String()
    version = fields.String()
    rule = fields.String(allow_none=True)
    starts_at = fields.DateTime()
    expires_at = fields.DateTime(allow_none=True)
    removed_at = fields.DateTime(allow_none=True)
    origin = fields.String(
        metadata={"description": "request, direct or auto (assigned by an autoAssign rule)"}
    )


class AssignmentQuerySchema(Strict):
    after = Cursor()
    subject = Text(MAX_ID)
    package = Text(MAX_ID)
    catalog = Text(MAX_ID)
    state = fields.String(validate=validate.OneOf(ASSIGNMENT_STATES))
    expiring_before = UtcDateTime()


class DirectAssignmentInSchema(Strict):
    package = Id(required=True)
    subject = Text(MAX_ID, required=True, metadata={"description": "the directory user's id"})
    duration = Duration(
        required=True,
        metadata={"description": "how long the access lasts; at most the package's longest"},
    )
    justification = Text(MAX_TEXT, load_default=None, allow_none=True)


class ExtendInSchema(Strict):
    duration = Duration(as_text=True, load_default=None, allow_none=True)
    justification = Text(MAX_TEXT, load_default=None, allow_none=True)
