"""Auto-assignment: a dry run of what a version's autoAssign rules would add and remove."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validates_schema

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.schemas import Strict
from policyd.api.schemas.versions import rule_files
from policyd.rules.inputs import MAX_ID, Text
from policyd.services.actor import Role
from policyd.services.auto_assign_preview import preview
from policyd.services.errors import NotFoundError
from policyd.services.replay import ReplayService

blp = Blueprint(
    "auto_assign", __name__, url_prefix="/v1/auto-assignments", description="Auto-assignment"
)


class PreviewInSchema(Strict):
    version = Text(
        MAX_ID,
        load_default=None,
        allow_none=True,
        metadata={"description": "a published version id (default: the active version)"},
    )
    files = rule_files(
        "or the rule files to try: relative path -> text", load_default=None, allow_none=True
    )

    @validates_schema
    def one_candidate(self, data, **kwargs):
        if data.get("version") is not None and data.get("files") is not None:
            raise ValidationError("give version or files, not both", field_name="version")


class PackageCountSchema(Schema):
    package = fields.String()
    would_add = fields.Integer()
    would_remove = fields.Integer(
        metadata={"description": "auto-assignments whose holder no longer matches"}
    )
    unchanged = fields.Integer(metadata={"description": "auto-assigned and still matching"})
    held_otherwise = fields.Integer(
        metadata={"description": "matching, but holding it by request or directly"}
    )
    grace = fields.String(allow_none=True, metadata={"description": "ISO-8601, or none"})


class PreviewOutSchema(Schema):
    version = fields.String(metadata={"description": "the version whose rules were tried"})
    users = fields.Integer(metadata={"description": "active users evaluated"})
    would_add = fields.Integer()
    would_remove = fields.Integer()
    packages = fields.List(fields.Nested(PackageCountSchema))


@blp.route("/preview")
class Preview(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.arguments(PreviewInSchema())
    @blp.response(200, PreviewOutSchema)
    def post(self, data):
        """Count, per package, whom a version's (or files') autoAssign rules would assign and
        unassign if applied now; writes nothing."""
        session, runtime = context.session(), context.runtime()
        if data["version"] is None and data["files"] is None:
            active = runtime.active
            if active is None:
                raise NotFoundError("no policy version is active; publish one first")
            bundle = active.bundle
        else:
            bundle = ReplayService(session).candidate(version=data["version"], files=data["files"])
        return preview(session, runtime, bundle, now=context.now()).to_dict()
