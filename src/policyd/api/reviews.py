"""Access reviews: reviewers' items and decisions; campaigns and their CSV export."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.errors import ApiErrorSchema
from policyd.api.schemas import Strict
from policyd.rules.inputs import MAX_ID, MAX_TEXT, Text
from policyd.services.actor import Role
from policyd.services.reviews import ItemState, ReviewService

blp = Blueprint("reviews", __name__, url_prefix="/v1/reviews", description="Access reviews")


def service() -> ReviewService:
    return ReviewService(context.session(), context.runtime())


class ReviewCampaignOutSchema(Schema):
    id = fields.String()
    package = fields.String()
    review = fields.String(metadata={"description": "the review's id in the package"})
    version = fields.String(metadata={"description": "the policy version that opened it"})
    state = fields.String(metadata={"description": "open or closed"})
    on_no_response = fields.String(metadata={"description": "remove, keep or recommendation"})
    self_review = fields.Boolean()
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    opened_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)


class ReviewItemOutSchema(Schema):
    id = fields.String()
    campaign_id = fields.String()
    assignment_id = fields.String()
    subject_id = fields.String(metadata={"description": "whose access is reviewed"})
    package = fields.String()
    recommendation = fields.String(allow_none=True, metadata={"description": "keep or remove"})
    recommendation_rule = fields.String(allow_none=True)
    recommendation_reason = fields.String(allow_none=True)
    decision = fields.String(allow_none=True, metadata={"description": "keep or remove"})
    justification = fields.String(allow_none=True)
    decided_by = fields.String(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    result = fields.String(
        allow_none=True, metadata={"description": "kept, removed or gone, once applied"}
    )
    applied_at = fields.DateTime(allow_none=True)


class ReviewCampaignQuerySchema(Strict):
    package = Text(64, min_size=1)
    state = fields.String(validate=validate.OneOf(["open", "closed"]))


class ReviewItemQuerySchema(Strict):
    campaign = Text(36, min_size=1)
    reviewer = Text(
        MAX_ID,
        min_size=1,
        metadata={"description": "admins and auditors: items this user reviews"},
    )
    state = fields.String(
        validate=validate.OneOf([str(s) for s in ItemState]),
        load_default=str(ItemState.PENDING),
        metadata={"description": "pending (the default), decided or applied"},
    )


class ReviewDecisionInSchema(Strict):
    decision = fields.String(required=True, validate=validate.OneOf(["keep", "remove"]))
    justification = Text(MAX_TEXT, min_size=1, required=True)


@blp.route("/campaigns")
class Campaigns(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.arguments(ReviewCampaignQuerySchema(), location="query")
    @blp.response(200, ReviewCampaignOutSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Review campaigns, newest first (admins and auditors)."""
        return context.paged(pagination_parameters, service().campaigns, context.actor(), **args)


@blp.route("/campaigns/<campaign_id>")
class CampaignById(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.response(200, ReviewCampaignOutSchema)
    def get(self, campaign_id):
        """One campaign."""
        return service().campaign(context.actor(), campaign_id)


@blp.route("/campaigns/<campaign_id>/export")
class CampaignExport(MethodView):
    @guard(Role.ADMIN, Role.AUDITOR)
    @blp.response(200, content_type="text/csv", description="one row per item")
    def get(self, campaign_id):
        """Every item of a campaign as CSV: reviewers, recommendation, decision, result."""
        text = service().export_csv(context.actor(), campaign_id)
        return Response(text, mimetype="text/csv")


@blp.route("/items")
class Items(MethodView):
    @guard(Role.USER, Role.ADMIN, Role.AUDITOR)
    @blp.arguments(ReviewItemQuerySchema(), location="query")
    @blp.response(200, ReviewItemOutSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """Review items: a user's are those they review, pending ones by default."""
        return context.paged(pagination_parameters, service().items, context.actor(), **args)


@blp.route("/items/<item_id>")
class ItemById(MethodView):
    @guard(Role.USER, Role.ADMIN, Role.AUDITOR)
    @blp.response(200, ReviewItemOutSchema)
    def get(self, item_id):
        """One review item (its reviewers, its holder, admins and auditors)."""
        return service().get_item(context.actor(), item_id)


@blp.route("/items/<item_id>/decision")
class ItemDecision(MethodView):
    @guard(Role.USER, Role.ADMIN)
    @blp.arguments(ReviewDecisionInSchema())
    @blp.response(200, ReviewItemOutSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, data, item_id):
        """Keep or remove, with a justification (the item's reviewers or an admin)."""
        return service().decide(
            context.actor(),
            item_id,
            data["decision"],
            data["justification"],
            now=context.now(),
        )
