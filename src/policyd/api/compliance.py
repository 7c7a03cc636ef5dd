"""Compliance: who had access (GET /v1/access-report) and the audit chain's state."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, post_load, validate

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.schemas import Cursor, Strict, UtcDateTime
from policyd.rules.inputs import MAX_ID, Text
from policyd.services.access_report import AccessReportService, check_target, window
from policyd.services.actor import Role
from policyd.services.audit import AuditService, parse_anchor
from policyd.services.errors import InvalidError

blp = Blueprint("compliance", __name__, url_prefix="/v1", description="Who had access; audit chain")


class AccessReportQuerySchema(Strict):
    package = Text(64, min_size=1, metadata={"description": "who held this access package"})
    resource = Text(500, min_size=1, metadata={"description": "who held this resource (group:...)"})
    subject = Text(MAX_ID, min_size=1, metadata={"description": "what this person held"})
    at = UtcDateTime(metadata={"description": "a moment"})
    start = UtcDateTime(data_key="from", metadata={"description": "a period's start"})
    end = UtcDateTime(data_key="to", metadata={"description": "its end (exclusive)"})
    after = Cursor()

    @post_load
    def checked(self, data, **_kwargs):
        """One target and one window, checked by the service's own rules."""
        try:
            check_target(data.get("package"), data.get("resource"), data.get("subject"))
            when = window(data.get("at"), data.get("start"), data.get("end"))
        except InvalidError as err:
            raise ValidationError({err.field or "package": [err.message]}) from None
        return {
            "when": when,
            **{key: data.get(key) for key in ("package", "resource", "subject", "after")},
        }


class ApprovedBySchema(Schema):
    approver = fields.String()
    stage = fields.Integer()
    at = fields.DateTime()


class TermsSchema(Schema):
    request_id = fields.String()
    decision_id = fields.String()
    rule = fields.String(allow_none=True)
    version = fields.String()
    approved_by = fields.List(
        fields.Nested(ApprovedBySchema),
        metadata={"description": "who approved each stage; empty when the rules approved"},
    )
    granted_at = fields.DateTime(metadata={"description": "when these terms took effect"})
    until = fields.DateTime(allow_none=True, metadata={"description": "when they ended"})


class HoldingSchema(Schema):
    assignment_id = fields.String()
    subject_id = fields.String()
    package = fields.String()
    state = fields.String(metadata={"description": "the assignment's state now"})
    held_from = fields.DateTime()
    held_until = fields.DateTime(
        allow_none=True, metadata={"description": "when policyd began removing it; null: held"}
    )
    expires_at = fields.DateTime(allow_none=True)
    terms = fields.List(
        fields.Nested(TermsSchema),
        metadata={"description": "the request's terms in force in the window (extensions)"},
    )


ANCHOR = r"^[0-9a-fA-F]{64}@[0-9]{1,18}$"


class VerifyQuerySchema(Strict):
    from_anchor = fields.String(
        load_default=None,
        validate=validate.Regexp(ANCHOR, error="an anchor reads HASH@ID (64 hex digits, @, an id)"),
        metadata={"description": "HASH@ID kept from an earlier check", "pattern": ANCHOR},
    )

    @post_load
    def checked(self, data, **_kwargs):
        try:
            anchor = parse_anchor(data["from_anchor"]) if data["from_anchor"] else None
        except InvalidError as err:
            raise ValidationError({"from_anchor": [err.message]}) from None
        return {"anchor": anchor}


class ProblemSchema(Schema):
    id = fields.Integer()
    problem = fields.String()


class ChainReportSchema(Schema):
    intact = fields.Boolean()
    records = fields.Integer()
    first_id = fields.Integer(allow_none=True)
    last_id = fields.Integer(allow_none=True)
    anchor = fields.String(allow_none=True, metadata={"description": "HASH@ID of the last"})
    broken = fields.Integer(metadata={"description": "how many problems were found"})
    problems = fields.List(fields.Nested(ProblemSchema), metadata={"description": "first 100"})


@blp.route("/access-report")
class AccessReport(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.arguments(AccessReportQuerySchema(), location="query")
    @blp.response(200, HoldingSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Who held a package, a resource or a person's access at a moment (`at`) or during
        a period (`from`, `to`), with request, approvers, rule and version (admin, auditor)."""
        service = AccessReportService(context.session())
        return context.paged(pagination_parameters, service.holders, context.actor(), **args)


@blp.route("/audit/verify")
class AuditVerify(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.arguments(VerifyQuerySchema(), location="query")
    @blp.response(200, ChainReportSchema)
    def get(self, args):
        """Walk the audit chain (from an anchor) and report every break (admin, auditor)."""
        report = AuditService(context.session()).verify(**args)
        return {
            "intact": report.intact,
            "records": report.records,
            "first_id": report.first_id,
            "last_id": report.last_id,
            "anchor": report.anchor,
            "broken": report.broken,
            "problems": [{"id": i, "problem": p} for i, p in report.problems],
        }
