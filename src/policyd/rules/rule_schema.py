"""Schemas of a package's rules: the decision a rule gives, its approval stages and the
lifetime of the access it grants."""

from __future__ import annotations

from datetime import datetime

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
from policyd.rules.inputs import Duration
from policyd.rules.lifetime import lifetime_cron_problem
from policyd.rules.model import (
    ApprovalPolicy,
    LifetimePolicy,
    RequestedDuration,
    Rule,
    StagePolicy,
)
from policyd.rules.question import questions_field
from policyd.rules.schema_fields import ConditionField, Moment, Slug, references
from policyd.rules.timing import parse_duration, parse_window

APPROVER_KINDS = ("manager", "owners", "sponsors", "user:<id>", "group:<id>")
DEFAULT_STAGE_TIMEOUT = "P14D"


class StageSchema(Schema):
    class Meta:
        unknown = RAISE

    approvers = references(APPROVER_KINDS, required=True)
    timeout = Duration(any_form=True, load_default=None)
    escalate_to = references(APPROVER_KINDS, data_key="escalateTo", load_default=())

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
    questions = questions_field()  # asked only when the rule applies (docs/rules.md)

    @post_load
    def make(self, data, **kwargs):
        then = data["then"]
        extra = {"when": data["when"]} if "when" in data else {}
        if data["questions"]:
            extra["questions"] = tuple(data["questions"])
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
