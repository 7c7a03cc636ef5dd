"""Schemas of access requests, their questions, approvals and verdicts."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from policyd.api.schemas.base import Cursor, Strict
from policyd.domain import RequestState
from policyd.rules.inputs import (
    MAX_ID,
    MAX_TEXT,
    Answers,
    Duration,
    Id,
    SubjectSchema,
    Text,
)

# The states a list may be filtered by (docs/lifecycle.md); any other value is a 422.
REQUEST_STATES = tuple(state.value for state in RequestState)


class RequestInSchema(Strict):
    package = Id(required=True)
    subject = fields.Nested(
        SubjectSchema,
        load_default=None,
        metadata={"description": "whom the access is for; defaults to the caller"},
    )
    duration = Duration(as_text=True, load_default=None, allow_none=True)
    justification = Text(MAX_TEXT, load_default=None, allow_none=True)
    answers = Answers(
        load_default=None,
        allow_none=True,
        metadata={"description": "question id -> answer, for the package's questions"},
    )


class QuestionQuerySchema(Strict):
    lang = Text(35, metadata={"description": "the requester's language tag, e.g. fr or pt-BR"})
    subject = Text(
        200, metadata={"description": "whom `applies` is for (default: the caller); users: self"}
    )


class QuestionOutSchema(Schema):
    id = fields.String()
    type = fields.String(metadata={"enum": ["text", "choice", "number", "date"]})
    text = fields.String(metadata={"description": "in `lang`, else the first text written"})
    texts = fields.Dict(
        keys=fields.String(), values=fields.String(), allow_none=True
    )  # language tag -> text, when localised
    required = fields.Boolean()
    options = fields.List(fields.String(), allow_none=True)
    min = fields.Float(allow_none=True)
    max = fields.Float(allow_none=True)
    rule = fields.String(allow_none=True, metadata={"description": "the rule that asks it"})
    applies = fields.Boolean(
        allow_none=True,
        metadata={"description": "asked of the subject; null: the caller is no directory user"},
    )


class VerdictInSchema(Strict):
    comment = Text(MAX_TEXT, load_default=None, allow_none=True)
    justification = Text(MAX_TEXT, load_default=None, allow_none=True)


class StageStateSchema(Schema):
    approvers = fields.List(fields.String())
    escalate_to = fields.List(fields.String())
    refs = fields.List(fields.String())
    timeout_seconds = fields.Integer()


class ApprovalRecordSchema(Schema):
    stage = fields.Integer()
    approver = fields.String()
    verdict = fields.String()
    comment = fields.String(allow_none=True)
    at = fields.DateTime()


class RequestLifetimeSchema(Schema):
    """How the access's lifetime counts from its grant, and why (docs/lifecycle.md)."""

    explanation = fields.String()
    clamped = fields.Boolean()
    span_seconds = fields.Float(allow_none=True)
    not_after = fields.String(allow_none=True)
    expires_at_if_granted_at_filing = fields.String(allow_none=True)
    granted_at = fields.String()
    expires_at = fields.String(allow_none=True)


class RequestOutSchema(Schema):
    id = fields.String()
    package = fields.String()
    subject_id = fields.String()
    principal = fields.String()
    state = fields.String()
    stage = fields.Integer(allow_none=True)
    stages = fields.List(fields.Nested(StageStateSchema))
    approvals = fields.List(fields.Nested(ApprovalRecordSchema))
    decision_id = fields.String()
    version = fields.String()
    rule = fields.String(allow_none=True)
    reason = fields.String()
    justification = fields.String(allow_none=True)
    requested_duration = fields.String(allow_none=True)
    answers = fields.Dict(allow_none=True)  # to the package's questions, as filed
    expires_at = fields.DateTime(allow_none=True)
    lifetime = fields.Nested(RequestLifetimeSchema, allow_none=True)
    extends_assignment_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class RequestQuerySchema(Strict):
    after = Cursor()
    state = fields.String(validate=validate.OneOf(REQUEST_STATES))
    approver = Text(MAX_ID, metadata={"description": "`me` for the caller's approval inbox"})
    subject = Text(MAX_ID)
    catalog = Text(MAX_ID, metadata={"description": "only requests for this catalog's packages"})
