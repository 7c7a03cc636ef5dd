"""Marshmallow schemas for rule files (format policyd/v1)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from typing import Any

from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from policyd.domain import Outcome
from policyd.rules.apiversion import ApiVersion
from policyd.rules.condition import (
    ConditionError,
    check_decision_time,
    parse_condition,
    parse_duration,
    parse_window,
    referenced_answers,
    to_utc,
)
from policyd.rules.inputs import Duration
from policyd.rules.lifetime import lifetime_cron_problem
from policyd.rules.model import (
    AccessPackage,
    ApprovalPolicy,
    LifetimePolicy,
    NoResponse,
    Recommendation,
    RequestedDuration,
    Resource,
    ReviewPolicy,
    Rule,
    StagePolicy,
    Verdict,
)
from policyd.rules.question import question_problems, questions_field
from policyd.rules.review import overlap_problem

SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SLUG_HELP = "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"
APPROVER_KINDS = ("manager", "owners", "sponsors", "user:<id>", "group:<id>")
DEFAULT_STAGE_TIMEOUT = "P14D"


class Slug(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not SLUG.match(text):
            raise ValidationError(f"{text!r} is not a valid id ({SLUG_HELP})")
        return text


class GroupId(fields.String):
    """A directory group id as written in the directory (`Group.PaymentsApprovers`)."""

    MAX = 180  # with its rule's prefix, a rule id fits the 200 characters of its columns

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.strip() or len(text) > self.MAX:
            raise ValidationError(f"a group id has 1 to {self.MAX} characters")
        if text.startswith("group:"):
            raise ValidationError(f"write the group id without 'group:' ({text[6:]!r})")
        return text


class Moment(fields.Field):
    """A date (midnight UTC) or an ISO-8601 date-time; without an offset it is UTC. It is
    loaded in UTC, so one that has no UTC form is refused here, not when a decision uses it."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationError(f"{value!r} is not an ISO-8601 date or date-time") from None
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, date):
            moment = datetime.combine(value, time(0, 0), tzinfo=UTC)
        else:
            raise ValidationError(f"{value!r} is not an ISO-8601 date or date-time")
        try:
            return to_utc(moment)
        except ValueError as err:
            raise ValidationError(str(err)) from None


class DecisionTime(Moment):
    """A Moment at which decisions can be made (docs/rules.md, "Time")."""

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            check_decision_time(moment)
        except ValueError as err:
            raise ValidationError(str(err)) from None
        return moment


class CronWindow(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_window(value)
        except ValueError as err:
            raise ValidationError(str(err)) from None


class ConditionField(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_condition(value)
        except ConditionError as err:
            raise ValidationError(_nest(err.problems)) from None


def _nest(problems: list[tuple[tuple, str]]) -> dict:
    """Turn (path, message) pairs into marshmallow's nested error dict."""
    root: dict[Any, Any] = {}
    for path, message in problems:
        node = root
        for part in path:
            node = node.setdefault(part, {})
        node.setdefault("_schema", []).append(message)
    return root


class Reference(fields.String):
    """A directory principal: `user:<id>` or `group:<id>`, plus named approver kinds."""

    def __init__(self, kinds: tuple[str, ...], noun: str = "approver", **kwargs):
        self.kinds = kinds
        self.noun = noun
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        kind, _, ident = text.partition(":")
        if text in self.kinds or (f"{kind}:<id>" in self.kinds and ident.strip()):
            return text
        raise ValidationError(
            f"unknown {self.noun} kind {text!r}; use one of: {', '.join(self.kinds)}"
        )


def _references(kinds: tuple[str, ...], noun: str = "approver", **kwargs) -> fields.List:
    return fields.List(Reference(kinds, noun), validate=validate.Length(min=1), **kwargs)


class StageSchema(Schema):
    class Meta:
        unknown = RAISE

    approvers = _references(APPROVER_KINDS, required=True)
    timeout = Duration(any_form=True, load_default=None)
    escalate_to = _references(APPROVER_KINDS, data_key="escalateTo", load_default=())

    @post_load
    def make(self, data, **kwargs):
        return StagePolicy(
            approvers=tuple(data["approvers"]),
            timeout=data["timeout"] or parse_duration(DEFAULT_STAGE_TIMEOUT),
            escalate_to=tuple(data["escalate_to"]),
        )


class ApprovalSchema(Schema):
    class Meta:
        unknown = RAISE

    stages = fields.List(
        fields.Nested(StageSchema),
        required=True,
        validate=validate.Length(min=1, max=3, error="between 1 and 3 approval stages"),
    )
    require_justification = fields.Boolean(data_key="requireJustification", load_default=False)

    @post_load
    def make(self, data, **kwargs):
        return ApprovalPolicy(tuple(data["stages"]), data["require_justification"])


ENDS = ("duration", "end_date", "until", "permanent")


class LifetimeSchema(Schema):
    class Meta:
        unknown = RAISE

    duration = Duration(any_form=True)
    end_date = Moment(data_key="endDate")
    until = fields.Nested(lambda: UntilSchema())
    permanent = fields.Boolean(
        validate=validate.Equal(True, error="permanent is true, or left out for a lifetime")
    )
    maximum = Duration(any_form=True, data_key="max")
    requested = fields.Enum(
        RequestedDuration, by_value=True, load_default=RequestedDuration.SHORTER
    )
    extendable = fields.Boolean(load_default=False)

    @validates_schema
    def one_end(self, data, **kwargs):
        given = [key for key in ENDS if data.get(key) is not None]
        if len(given) != 1:
            raise ValidationError(
                "give exactly one of duration, endDate, until or permanent: true",
                field_name="_schema",
            )
        maximum, duration = data.get("maximum"), data.get("duration")
        if maximum is not None and data.get("permanent"):
            raise ValidationError(
                "permanent access has no max; give a duration and max instead", field_name="max"
            )
        if maximum is not None and duration is not None:
            origin = datetime(2000, 1, 1)
            if origin + duration > origin + maximum:
                raise ValidationError("the duration is longer than max", field_name="max")

    @post_load
    def make(self, data, **kwargs):
        return LifetimePolicy(
            duration=data.get("duration"),
            end_date=data.get("end_date"),
            until=data.get("until"),
            maximum=data.get("maximum"),
            requested=data["requested"],
            extendable=data["extendable"],
            permanent=bool(data.get("permanent")),
        )


class UntilSchema(Schema):
    class Meta:
        unknown = RAISE

    cron = fields.String(required=True)
    timezone = fields.String(load_default="UTC")

    @post_load
    def make(self, data, **kwargs):
        try:
            window = parse_window(data)
        except ValueError as err:
            raise ValidationError(str(err), field_name="cron") from None
        problem = lifetime_cron_problem(window)
        if problem is not None:
            raise ValidationError(problem, field_name="cron")
        return window


class ThenSchema(Schema):
    class Meta:
        unknown = RAISE

    decision = fields.Enum(Outcome, by_value=True, required=True)
    reason = fields.String()
    approval = fields.Nested(ApprovalSchema)
    lifetime = fields.Nested(LifetimeSchema)

    @validates_schema
    def consistent(self, data, **kwargs):
        decision = data.get("decision")
        if decision is Outcome.REQUIRE_APPROVAL and "approval" not in data:
            raise ValidationError("require_approval needs approval stages", field_name="approval")
        if decision is not Outcome.REQUIRE_APPROVAL and "approval" in data:
            raise ValidationError(f"{decision} takes no approval", field_name="approval")
        if decision is Outcome.DENY and "lifetime" in data:
            raise ValidationError("deny takes no lifetime", field_name="lifetime")


class RuleSchema(Schema):
    class Meta:
        unknown = RAISE

    id = Slug(required=True)
    description = fields.String()
    priority = fields.Integer(strict=True, load_default=0)
    when = ConditionField()
    then = fields.Nested(ThenSchema, required=True)

    @post_load
    def make(self, data, **kwargs):
        then = data["then"]
        extra = {"when": data["when"]} if "when" in data else {}
        return Rule(
            id=data["id"],
            outcome=then["decision"],
            priority=data["priority"],
            reason=then.get("reason"),
            description=data.get("description"),
            approval=then.get("approval"),
            lifetime=then.get("lifetime"),
            **extra,
        )


class ResourceSchema(Schema):
    class Meta:
        unknown = RAISE

    connector = fields.String(required=True, validate=validate.Length(min=1))
    resource = fields.String(required=True, validate=validate.Length(min=1))
    role = fields.String(load_default="member", validate=validate.Length(min=1))

    @post_load
    def make(self, data, **kwargs):
        return Resource(**data)


REVIEWER_KINDS = ("self", "manager", "owners", "user:<id>", "group:<id>")


def _unique_ids(items: list) -> None:
    ids = [item.id for item in items]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValidationError(f"duplicate id(s): {', '.join(repeated)}")


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
    reviewers = _references(REVIEWER_KINDS, "reviewer", required=True)
    fallback = _references(REVIEWER_KINDS, "reviewer", load_default=())
    reminders = fields.List(Duration(), load_default=())
    on_no_response = fields.Enum(
        NoResponse, by_value=True, data_key="onNoResponse", load_default=NoResponse.KEEP
    )
    recommendations = fields.List(
        fields.Nested(RecommendationSchema), load_default=(), validate=_unique_ids
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


class PackageSchema(Schema):
    class Meta:
        unknown = RAISE

    id = Slug(required=True)
    display_name = fields.String(data_key="displayName", required=True)
    description = fields.String()
    catalog = fields.String()
    owners = _references(("user:<id>", "group:<id>"), load_default=())
    managers = _references(("user:<id>", "group:<id>"), load_default=())
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
    reviews = fields.List(fields.Nested(ReviewSchema), load_default=(), validate=_unique_ids)

    @validates_schema
    def review_owners(self, data, **kwargs):
        for review in data.get("reviews", ()):
            if not data.get("owners") and "owners" in (*review.reviewers, *review.fallback):
                raise ValidationError("reviewer 'owners' needs package.owners", "reviews")

    @validates_schema
    def answers_asked(self, data, **kwargs):
        """Questions are unique, and rules read answers only to questions the package asks."""
        questions = tuple(data.get("questions") or ())
        problem = question_problems(questions)
        if problem:
            raise ValidationError(problem, field_name="questions")
        asked = {q.id for q in questions}
        errors: dict = {}
        for number, rule in enumerate(data.get("rules") or ()):
            unknown = sorted(set(referenced_answers(rule.when)) - asked)
            if unknown:
                message = f"answers.{unknown[0]}: the package declares no question {unknown[0]!r}"
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
        )


class RuleFileSchema(Schema):
    class Meta:
        unknown = RAISE

    api_version = ApiVersion()
    package = fields.Nested(PackageSchema, required=True)
