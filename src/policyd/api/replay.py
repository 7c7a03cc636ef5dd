"""Replay: how a candidate version would have decided the logged decisions."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate, validates_schema
from marshmallow.exceptions import ValidationError

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.schemas import Strict, UtcDateTime
from policyd.api.schemas.versions import rule_files
from policyd.rules.inputs import MAX_ID, Text
from policyd.services.actor import Role
from policyd.services.replay import ReplayService

blp = Blueprint("replay", __name__, url_prefix="/v1/replay", description="Replay")

# A replay over HTTP answers within one request; larger ones belong to `policyd replay`.
MAX_EXAMINED = 200_000


class ReplayInSchema(Strict):
    version = Text(
        MAX_ID,
        load_default=None,
        allow_none=True,
        metadata={"description": "a published version id (active or not)"},
    )
    files = rule_files(
        "or the candidate's files: relative path -> text", load_default=None, allow_none=True
    )
    since = UtcDateTime(load_default=None, allow_none=True)
    package = Text(64, min_size=1, load_default=None, allow_none=True)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=0, max=10_000))

    @validates_schema
    def one_candidate(self, data, **kwargs):
        if (data.get("version") is None) == (data.get("files") is None):
            raise ValidationError("give exactly one of version and files", field_name="version")


class OutcomeRuleSchema(Schema):
    decision = fields.String()
    rule = fields.String(allow_none=True)


class ChangeSchema(Schema):
    decision_id = fields.String()
    at = fields.String()
    package = fields.String()
    subject_id = fields.String()
    version = fields.String()
    before = fields.Nested(OutcomeRuleSchema)
    after = fields.Nested(OutcomeRuleSchema)


class CountSchema(Schema):
    package = fields.String()
    from_ = fields.String(data_key="from", attribute="from")
    to = fields.String()
    decisions = fields.Integer()


class ReplayOutSchema(Schema):
    candidate = fields.String(metadata={"description": "the candidate's version id"})
    examined = fields.Integer()
    changed = fields.Integer()
    counts = fields.List(fields.Nested(CountSchema))
    changes = fields.List(fields.Nested(ChangeSchema), metadata={"description": "up to limit"})


@blp.route("")
class Replay(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.arguments(ReplayInSchema())
    @blp.response(200, ReplayOutSchema)
    def post(self, data):
        """Decide the logged decisions again under a candidate (a version or files) and list
        those that would change, with counts per package; writes nothing."""
        service = ReplayService(context.session())
        candidate = service.candidate(version=data["version"], files=data["files"])
        report, changes = service.run(
            candidate,
            since=data["since"],
            package=data["package"],
            limit=data["limit"],
            max_examined=MAX_EXAMINED,
        )
        return report.to_dict() | {"changes": [change.to_dict() for change in changes]}
