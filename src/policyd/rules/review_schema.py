"""Schemas of a package's access reviews and the recommendations they make
(docs/reviews.md)."""

from __future__ import annotations

from datetime import datetime

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validates_schema

from policyd.rules.inputs import Duration
from policyd.rules.model import NoResponse, Recommendation, ReviewPolicy, Verdict
from policyd.rules.review import overlap_problem
from policyd.rules.schema_fields import ConditionField, CronWindow, Slug, references, unique_ids

REVIEWER_KINDS = ("self", "manager", "owners", "user:<id>", "group:<id>")


class RecommendationSchema(Schema):
    class Meta:
        unknown = RAISE

    id = Slug(required=True)
    when = ConditionField(required=True)
    recommend = fields.Enum(Verdict, by_value=True, required=True)
    reason = fields.String()

    @post_load
    def make(self, data, **kwargs):
        return Recommendation(data["id"], data["recommend"], data["when"], data.get("reason"))


class ReviewSchema(Schema):
    """An access review (docs/reviews.md)."""

    class Meta:
        unknown = RAISE

    id = Slug(required=True)
    description = fields.String()
    schedule = CronWindow(required=True)
    duration = Duration(required=True)
    reviewers = references(REVIEWER_KINDS, "reviewer", required=True)
    fallback = references(REVIEWER_KINDS, "reviewer", load_default=())
    reminders = fields.List(Duration(), load_default=())
    on_no_response = fields.Enum(
        NoResponse, by_value=True, data_key="onNoResponse", load_default=NoResponse.KEEP
    )
    recommendations = fields.List(
        fields.Nested(RecommendationSchema), load_default=(), validate=unique_ids
    )

    @validates_schema
    def consistent(self, data, **kwargs):
        duration, origin = data.get("duration"), datetime(2000, 1, 1)
        if duration is not None and origin + duration <= origin:
            raise ValidationError("a review lasts longer than nothing", field_name="duration")
        for reminder in data.get("reminders", ()):
            if duration is not None and origin + reminder >= origin + duration:
                raise ValidationError(
                    "a reminder comes before the end, within the duration", field_name="reminders"
                )
        if data.get("schedule") and duration is not None:
            problem = overlap_problem(data["schedule"], origin + duration - origin)
            if problem:
                raise ValidationError(problem, field_name="duration")
        wants = data.get("on_no_response") is NoResponse.RECOMMENDATION
        if wants and not data.get("recommendations"):
            raise ValidationError(
                "onNoResponse: recommendation needs recommendations", field_name="onNoResponse"
            )

    @post_load
    def make(self, data, **kwargs):
        return ReviewPolicy(
            id=data["id"],
            schedule=data["schedule"],
            duration=data["duration"],
            reviewers=tuple(data["reviewers"]),
            fallback=tuple(data["fallback"]),
            reminders=tuple(
                sorted(data["reminders"], key=lambda d: datetime(2000, 1, 1) + d, reverse=True)
            ),
            on_no_response=data["on_no_response"],
            recommendations=tuple(data["recommendations"]),
            description=data.get("description"),
        )
