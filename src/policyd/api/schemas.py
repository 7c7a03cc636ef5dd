"""Marshmallow schemas of the HTTP API (the OpenAPI document is generated from them)."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from policyd.rules.condition import parse_duration
from policyd.rules.inputs import RequestSchema, SubjectSchema
from policyd.services.jobs import KINDS


class Strict(Schema):
    class Meta:
        unknown = RAISE


class IsoDuration(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parse_duration(text)
        except ValueError as err:
            raise ValidationError(str(err)) from None


# decisions ------------------------------------------------------------------------------------
class DecisionInSchema(Strict):
    package = fields.String(required=True, validate=validate.Length(min=1))
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
    subject = fields.String()
    package = fields.String()
    version = fields.String()
    since = fields.AwareDateTime(default_timezone=None)


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
    package = fields.String(required=True, validate=validate.Length(min=1))
    subject = fields.Nested(
        SubjectSchema,
        load_default=None,
        metadata={"description": "whom the access is for; defaults to the caller"},
    )
    duration = fields.String(load_default=None, metadata={"description": "ISO-8601, e.g. PT4H"})
    justification = fields.String(load_default=None)


class VerdictInSchema(Strict):
    comment = fields.String(load_default=None)
    justification = fields.String(load_default=None)


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
    expires_at = fields.DateTime(allow_none=True)
    lifetime = fields.Nested(RequestLifetimeSchema, allow_none=True)
    extends_assignment_id = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class RequestQuerySchema(Strict):
    state = fields.String()
    approver = fields.String(metadata={"description": "`me` for the caller's approval inbox"})
    subject = fields.String()


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
    subject = fields.String()
    package = fields.String()
    state = fields.String()
    expiring_before = fields.AwareDateTime(default_timezone=None)


class ExtendInSchema(Strict):
    duration = fields.String(load_default=None)
    justification = fields.String(load_default=None)


# policy versions ------------------------------------------------------------------------------
class PublishInSchema(Strict):
    files = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1)),
        values=fields.String(),
        required=True,
        metadata={"description": "relative path -> rule-file text"},
    )
    message = fields.String(load_default="")
    git_commit = fields.String(load_default=None)


class VersionOutSchema(Schema):
    id = fields.String()
    content_hash = fields.String()
    git_commit = fields.String(allow_none=True)
    author = fields.String()
    message = fields.String()
    created_at = fields.DateTime()
    packages = fields.List(fields.String())
    active = fields.Boolean()


class VersionDetailSchema(VersionOutSchema):
    files = fields.Dict(keys=fields.String(), values=fields.String())


# directory ------------------------------------------------------------------------------------
def _text(size: int, **kwargs) -> fields.String:
    return fields.String(allow_none=True, validate=validate.Length(max=size), **kwargs)


class UserSchema(Strict):
    id = fields.String(dump_only=True)
    email = _text(320)
    display_name = _text(200)
    type = fields.String(load_default="member", validate=validate.OneOf(["member", "guest"]))
    manager_id = _text(200)
    organization_id = _text(200)
    department = _text(200)
    job_title = _text(200)
    employee_type = _text(100)
    attributes = fields.Dict(keys=fields.String(), load_default=dict)


class GroupSchema(Strict):
    id = fields.String(dump_only=True)
    display_name = _text(200, load_default=None)


class MemberSchema(Schema):
    user_id = fields.String()


class OrganizationSchema(Strict):
    id = fields.String(dump_only=True)
    display_name = fields.String(required=True, validate=validate.Length(max=200))
    domains = fields.List(fields.String(), load_default=list)
    internal_sponsors = fields.List(fields.String(), load_default=list)
    external_sponsors = fields.List(fields.String(), load_default=list)
    state = fields.String(
        load_default="configured", validate=validate.OneOf(["configured", "proposed"])
    )


# tokens and audit -----------------------------------------------------------------------------
class TokenInSchema(Strict):
    principal = fields.String(required=True, validate=validate.Length(min=1))
    role = fields.String(
        required=True, validate=validate.OneOf(["user", "app", "admin", "auditor"])
    )
    expires_in = IsoDuration(load_default=None)
    description = fields.String(load_default=None)


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
    object_id = fields.String()
    action = fields.String()
    since = fields.AwareDateTime(default_timezone=None)


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


# jobs -----------------------------------------------------------------------------------------
class JobQuerySchema(Strict):
    state = fields.String(validate=validate.OneOf(["queued", "running", "done", "failed"]))
    kind = fields.String(validate=validate.OneOf(KINDS))
    assignment = fields.String()


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
