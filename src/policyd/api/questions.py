"""The questions a package asks when it is requested."""

from __future__ import annotations

from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.errors import ApiErrorSchema
from policyd.api.schemas import QuestionOutSchema, QuestionQuerySchema
from policyd.services.questions import QuestionService

blp = Blueprint("questions", __name__, url_prefix="/v1/packages", description="Requestor questions")


@blp.route("/<package_id>/questions")
class PackageQuestions(MethodView):
    @guard()
    @blp.arguments(QuestionQuerySchema(), location="query")
    @blp.response(200, QuestionOutSchema(many=True))
    @blp.alt_response(403, schema=ApiErrorSchema, description="a user asking about another")
    @blp.alt_response(404, schema=ApiErrorSchema)
    def get(self, args, package_id):
        """The package's questions in the active version, to answer in `answers`; a rule's
        questions are asked (`applies`) only of requesters the rule applies to."""
        service = QuestionService(context.runtime(), context.session())
        return service.list(
            package_id,
            args.get("lang"),
            actor=context.actor(),
            subject_id=args.get("subject"),
            now=context.now(),
        )
