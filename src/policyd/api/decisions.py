"""POST /v1/decisions and the decision log."""

from __future__ import annotations

from flask import jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from policyd.api import context
from policyd.api.auth import require
from policyd.api.errors import ApiErrorSchema
from policyd.api.schemas import (
    DecisionInSchema,
    DecisionOutSchema,
    DecisionQuerySchema,
    DecisionRecordSchema,
)
from policyd.domain import RequestOptions
from policyd.services.actor import Role
from policyd.services.decisions import DecisionService, LoggedDecision

blp = Blueprint("decisions", __name__, url_prefix="/v1/decisions", description="Decisions")


def decision_out(logged: LoggedDecision) -> dict:
    return {"decision_id": logged.id, "subject_id": logged.subject.id, **logged.decision.to_dict()}


@blp.route("")
class Decisions(MethodView):
    @blp.arguments(DecisionInSchema())
    @blp.response(200, DecisionOutSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def post(self, data):
        """Decide whether a subject may have a package now (no side effects but the log)."""
        actor = require(Role.USER, Role.APP, Role.ADMIN)
        service = DecisionService(context.session(), context.runtime())
        subject = data["subject"]
        logged = service.decide(
            actor,
            data["package"],
            subject.id,
            subject,
            data["request"] or RequestOptions(),
            now=context.now(),
        )
        # Already JSON-ready: skip a second serialisation pass through the schema.
        return jsonify(decision_out(logged))

    @blp.arguments(DecisionQuerySchema(), location="query")
    @blp.response(200, DecisionRecordSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List logged decisions (users see their own)."""
        service = DecisionService(context.session(), context.runtime())
        return context.paged(pagination_parameters, service.list, context.actor(), **args)


@blp.route("/<decision_id>")
class DecisionById(MethodView):
    @blp.response(200, DecisionRecordSchema)
    def get(self, decision_id):
        """One logged decision with its full input."""
        record = DecisionService(context.session(), context.runtime()).get(decision_id)
        actor = context.actor()
        if actor.role is Role.USER and record.subject_id != actor.principal:
            from policyd.services.errors import NotFoundError

            raise NotFoundError(f"no decision {decision_id!r}", field="id")
        return record
