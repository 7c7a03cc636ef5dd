"""POST /v1/decisions and the decision log."""

from __future__ import annotations

import json

from flask import current_app
from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.errors import ApiErrorSchema
from policyd.api.pipeline import note_outcome
from policyd.api.schemas import (
    DecisionInSchema,
    DecisionOutSchema,
    DecisionQuerySchema,
    DecisionRecordSchema,
)
from policyd.domain import RequestOptions
from policyd.services.decisions import DECIDERS, DecisionService, LoggedDecision

blp = Blueprint("decisions", __name__, url_prefix="/v1/decisions", description="Decisions")


_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)


def service() -> DecisionService:
    extensions = current_app.extensions
    return DecisionService(
        context.session,  # opened only when needed: most decisions need no database
        context.runtime(),
        log=extensions["policyd.decision_log"],
        subjects=extensions["policyd.subjects"],
    )


def decision_json(logged: LoggedDecision) -> str:
    """{"decision_id", "subject_id", **result} as compact JSON, reusing the result's text."""
    head = _ENCODER.encode({"decision_id": logged.id, "subject_id": logged.subject.id})
    return f"{head[:-1]},{logged.result_json[1:]}"


@blp.route("")
class Decisions(MethodView):
    @guard(*DECIDERS)
    @blp.arguments(DecisionInSchema())
    @blp.response(200, DecisionOutSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def post(self, data):
        """Decide whether a subject may have a package now (no side effects but the log)."""
        actor = context.actor()
        subject = data["subject"]
        logged = service().decide(
            actor,
            data["package"],
            subject.id,
            subject,
            data["request"] or RequestOptions(),
            now=context.now(),
        )
        note_outcome(logged.decision.outcome.value)  # for the metrics (api/pipeline.py)
        # Already JSON-ready: no pass through the schema, nor jsonify's key sorting (the
        # busiest route; DecisionOutSchema still documents the answer).
        body = decision_json(logged)
        return current_app.response_class(body + "\n", mimetype="application/json")

    @guard()
    @blp.arguments(DecisionQuerySchema(), location="query")
    @blp.response(200, DecisionRecordSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List logged decisions (users see their own)."""
        return context.paged(pagination_parameters, service().list, context.actor(), **args)


@blp.route("/<decision_id>")
class DecisionById(MethodView):
    @guard()
    @blp.response(200, DecisionRecordSchema)
    def get(self, decision_id):
        """One logged decision with its full input (users: about them; apps: asked by them)."""
        return service().get(decision_id, context.actor())
