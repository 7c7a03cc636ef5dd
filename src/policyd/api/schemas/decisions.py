"""Schemas of the decision endpoints: a decision asked for, its answer, and the decision log."""

from __future__ import annotations

from marshmallow import Schema, fields

from policyd.api.schemas.base import Cursor, Strict, UtcDateTime
from policyd.rules.inputs import (
    MAX_ID,
    Id,
    RequestSchema,
    SubjectSchema,
    Text,
)


class DecisionInSchema(Strict):
    package = Id(required=True)
    subject = fields.Nested(SubjectSchema, required=True)
    request = fields.Nested(RequestSchema, load_default=None)


class LifetimeOutSchema(Schema):
    expires_at = fields.String(allow_none=True)
    explanation = fields.String()
    clamped = fields.Boolean()
    extendable = fields.Boolean()


class StageOutSchema(Schema):
    approvers = fields.List(fields.String())
    resolved = fields.List(fields.String())
    timeout = fields.String()
    escalate_to = fields.List(fields.String())


class ApprovalOutSchema(Schema):
    justification_required = fields.Boolean()
    stages = fields.List(fields.Nested(StageOutSchema))


class TemplateOriginSchema(Schema):
    id = fields.String(metadata={"description": "the template that made the package"})
    row = fields.String(metadata={"description": "its row: file:line"})


class DecisionOutSchema(Schema):
    decision_id = fields.String()
    decision = fields.String(metadata={"enum": ["auto_approve", "require_approval", "deny"]})
    package = fields.String()
    subject_id = fields.String()
    rule = fields.String(allow_none=True)
    matched = fields.List(fields.String())
    reason = fields.String()
    version = fields.String()
    template = fields.Nested(
        TemplateOriginSchema,
        allow_none=True,
        metadata={"description": "where a package made by a template came from; else null"},
    )
    now = fields.String()
    lifetime = fields.Nested(LifetimeOutSchema, allow_none=True)
    approval = fields.Nested(ApprovalOutSchema)


class DecisionQuerySchema(Strict):
    after = Cursor()
    subject = Text(MAX_ID)
    package = Text(MAX_ID)
    version = Text(MAX_ID)
    since = UtcDateTime()


class DecisionRecordSchema(Schema):
    id = fields.String()
    at = fields.DateTime()
    package = fields.String()
    subject_id = fields.String()
    outcome = fields.String()
    rule = fields.String(allow_none=True)
    matched = fields.List(fields.String())
    reason = fields.String()
    version = fields.String()
    principal = fields.String()
    input = fields.Dict()
