"""Marshmallow schemas of the HTTP API (the OpenAPI document is generated from them)."""

from __future__ import annotations

from datetime import UTC

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from policyd.domain import AssignmentState, JobState, RequestState
from policyd.rules.inputs import (
    MAX_ID,
    MAX_NAME,
    MAX_TEXT,
    Answers,
    Duration,
    Id,
    RequestSchema,
    SubjectSchema,
    Text,
    UserFieldsSchema,
    at_most,
)
from policyd.services.jobs import KINDS
from policyd.services.listing import MAX_CURSOR

# The states a list may be filtered by (docs/lifecycle.md); any other value is a 422.
REQUEST_STATES = tuple(state.value for state in RequestState)
ASSIGNMENT_STATES = tuple(state.value for state in AssignmentState)
JOB_STATES = tuple(state.value for state in JobState)
MAX_SPONSORS = 100  # domains or sponsors of one connected organisation
MAX_FILES = 1000  # files in one published bundle
MAX_PATH = 255  # a file's relative path


class Strict(Schema):
    class Meta:
        unknown = RAISE


class Cursor(Text):
    """The `after` query field of a list that pages by cursor (docs/api.md, Pagination)."""

    def __init__(self):
        super().__init__(
            MAX_CURSOR,
            metadata={
                "description": "a cursor from X-Pagination's next_after: the page after it, "
                "without totals; empty for the first page"
            },
        )


class UtcDateTime(fields.AwareDateTime):
    """An ISO-8601 date and time with an offset, loaded as UTC.

    Every date the API takes passes here: one that UTC cannot hold (0001-01-01T00:00:00+14:00
    is in year 0) is refused by name instead of overflowing later in a comparison.
    """

    def __init__(self, **kwargs):
        super().__init__(default_timezone=None, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except (OverflowError, ValueError):
            raise ValidationError("the date is outside the years 1 to 9999 in UTC") from None


# decisions ------------------------------------------------------------------------------------
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


# requests -------------------------------------------------------------------------------------
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


# assignments ----------------------------------------------------------------------------------
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


# policy versions ------------------------------------------------------------------------------
class PublishInSchema(Strict):
    files = fields.Dict(
        keys=Text(MAX_PATH, min_size=1),
        values=Text(size=None),
        required=True,
        validate=at_most(MAX_FILES, "files"),
        metadata={"description": "relative path -> rule-file text", "maxProperties": MAX_FILES},
    )
    message = Text(MAX_TEXT, load_default="")
    git_commit = Text(MAX_NAME, load_default=None, allow_none=True)


class VersionOutSchema(Schema):
    id = fields.String()
    content_hash = fields.String()
    git_commit = fields.String(allow_none=True)
    git_dirty = fields.Boolean(
        allow_none=True,
        metadata={"description": "uncommitted changes at publication; null: not known"},
    )
    author = fields.String()
    message = fields.String()
    created_at = fields.DateTime()
    packages = fields.List(fields.String())
    active = fields.Boolean()


class VersionDetailSchema(VersionOutSchema):
    files = fields.Dict(keys=fields.String(), values=fields.String())


# directory ------------------------------------------------------------------------------------
def _text(size: int, **kwargs) -> Text:
    return Text(size, allow_none=True, **kwargs)


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
    id = fields.String(dump_only=True)
    display_name = Text(MAX_NAME, required=True)
    domains = fields.List(Text(253), validate=validate.Length(max=MAX_SPONSORS))
    internal_sponsors = fields.List(Id(), validate=validate.Length(max=MAX_SPONSORS))
    external_sponsors = fields.List(Id(), validate=validate.Length(max=MAX_SPONSORS))
    state = fields.String(validate=validate.OneOf(["configured", "proposed"]))


# tokens and audit -----------------------------------------------------------------------------
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


# jobs -----------------------------------------------------------------------------------------
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
