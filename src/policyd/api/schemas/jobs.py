"""Schemas of the outbox jobs."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from policyd.api.schemas.base import Cursor, Strict
from policyd.domain import JobState
from policyd.rules.inputs import (
    MAX_ID,
    Text,
)
from policyd.services.jobs import KINDS

# The states a list may be filtered by (docs/lifecycle.md); any other value is a 422.
JOB_STATES = tuple(state.value for state in JobState)


class JobQuerySchema(Strict):
    after = Cursor()
    state = fields.String(validate=validate.OneOf(JOB_STATES))
    kind = fields.String(validate=validate.OneOf(KINDS))
    assignment = Text(MAX_ID)


class JobOutSchema(Schema):
    id = fields.String()
    kind = fields.String()
    connector = fields.String()
    resource = fields.String()
    role = fields.String()
    subject_id = fields.String()
    assignment_id = fields.String(allow_none=True)
    state = fields.String()
    attempts = fields.Integer()
    max_attempts = fields.Integer()
    run_at = fields.DateTime()
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    payload = fields.Dict(allow_none=True)  # a lifecycle event's own fields (kind send)
