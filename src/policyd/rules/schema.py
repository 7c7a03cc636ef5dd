"""Marshmallow schemas for rule files (format policyd/v1): the file, its package and the
package's resources; rules and reviews have their own modules."""

from __future__ import annotations

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from policyd.rules.apiversion import ApiVersion
from policyd.rules.auto_assign import AutoAssignSchema
from policyd.rules.condition import referenced_answers
from policyd.rules.model import AccessPackage, Resource
from policyd.rules.question import question_problems, questions_field
from policyd.rules.reminder import reminders_field
from policyd.rules.review_schema import ReviewSchema
from policyd.rules.rule_schema import LifetimeSchema, RuleSchema
from policyd.rules.schema_fields import GroupId, Slug, references, unique_ids


class ResourceSchema(Schema):
    class Meta:
        unknown = RAISE

    connector = fields.String(required=True, validate=validate.Length(min=1))
    resource = fields.String(required=True, validate=validate.Length(min=1))
    role = fields.String(load_default="member", validate=validate.Length(min=1))

    @post_load
    def make(self, data, **kwargs):
        return Resource(**data)


class PackageSchema(Schema):
    class Meta:
        unknown = RAISE

    id = Slug(required=True)
    display_name = fields.String(data_key="displayName", required=True)
    description = fields.String()
    catalog = fields.String()
    owners = references(("user:<id>", "group:<id>"), load_default=())
    managers = references(("user:<id>", "group:<id>"), load_default=())
    incompatible_with = fields.List(Slug(), data_key="incompatibleWith", load_default=())
    incompatible_groups = fields.List(GroupId(), data_key="incompatibleGroups", load_default=())
    resources = fields.List(fields.Nested(ResourceSchema), load_default=())
    lifetime = fields.Nested(LifetimeSchema)
    questions = questions_field()
    rules = fields.List(
        fields.Nested(RuleSchema),
        required=True,
        validate=validate.Length(min=1, error="a package needs at least one rule"),
    )
    reviews = fields.List(fields.Nested(ReviewSchema), load_default=(), validate=unique_ids)
    reminders = reminders_field()
    auto_assign = fields.Nested(AutoAssignSchema, data_key="autoAssign", load_default=None)

    @validates_schema
    def review_owners(self, data, **kwargs):
        for review in data.get("reviews", ()):
            if not data.get("owners") and "owners" in (*review.reviewers, *review.fallback):
                raise ValidationError("reviewer 'owners' needs package.owners", "reviews")

    @validates_schema
    def answers_asked(self, data, **kwargs):
        """Questions are unique across the package and its rules, and a rule reads answers
        only to questions the package or the rule itself asks."""
        questions = tuple(data.get("questions") or ())
        rules = tuple(data.get("rules") or ())
        problem = question_problems(questions)
        if problem:
            raise ValidationError(problem, field_name="questions")
        problem = question_problems(questions + tuple(q for r in rules for q in r.questions))
        if problem:
            raise ValidationError(f"{problem}, counting the rules' questions", field_name="rules")
        asked = {q.id for q in questions}
        errors: dict = {}
        for number, rule in enumerate(rules):
            unknown = sorted(
                set(referenced_answers(rule.when)) - asked - {q.id for q in rule.questions}
            )
            if unknown:
                whose = (
                    "neither the package nor the rule declares"
                    if rule.questions
                    else "the package declares no"
                )
                message = f"answers.{unknown[0]}: {whose} question {unknown[0]!r}"
                errors[number] = {"when": [message]}
        if errors:
            raise ValidationError({"rules": errors})

    @post_load
    def make(self, data, **kwargs):
        return AccessPackage(
            id=data["id"],
            display_name=data["display_name"],
            description=data.get("description"),
            catalog=data.get("catalog"),
            owners=tuple(data["owners"]),
            managers=tuple(data["managers"]),
            incompatible_with=tuple(data["incompatible_with"]),
            incompatible_groups=tuple(data["incompatible_groups"]),
            resources=tuple(data["resources"]),
            lifetime=data.get("lifetime"),
            questions=tuple(data["questions"]),
            rules=tuple(data["rules"]),
            reviews=tuple(data["reviews"]),
            reminders=data["reminders"],
            auto_assign=data["auto_assign"],
        )


class RuleFileSchema(Schema):
    class Meta:
        unknown = RAISE

    api_version = ApiVersion()
    package = fields.Nested(PackageSchema, required=True)
