"""Policy test cases kept beside the rules (`policies/tests/*.yaml`) and their runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
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

from policyd.domain import Decision, Outcome, RequestOptions, Subject
from policyd.rules.apiversion import ApiVersion
from policyd.rules.auto_assign import AutoAssigner
from policyd.rules.inputs import RequestSchema, SubjectSchema
from policyd.rules.loader import SUFFIXES, TESTS_DIR
from policyd.rules.model import Bundle
from policyd.rules.runtime import Policy
from policyd.rules.schema_fields import DecisionTime, Moment
from policyd.rules.source import Problem, ProblemsError, flatten_messages, parse_document

NEVER = "never"


class Expiry(Moment):
    """`expiresAt`: a moment, or `never` for permanent access."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value == NEVER:
            return NEVER
        return super()._deserialize(value, attr, data, **kwargs)


@dataclass(frozen=True)
class Expectation:
    decision: Outcome | None = None  # None: only `auto_assigned` is checked
    rule: str | None = None
    reason: str | None = None
    expires_at: datetime | str | None = None  # NEVER for permanent access; None: not checked
    approvers: tuple[str, ...] | None = None  # resolved approvers of the first stage
    rule_given: bool = False  # `rule: null` expects the default deny, so it differs from absent
    auto_assigned: bool | None = None  # whether the package's autoAssign matches the subject


@dataclass(frozen=True)
class Case:
    name: str
    package: str
    subject: Subject
    request: RequestOptions
    now: datetime
    expect: Expectation
    file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class CaseResult:
    case: Case
    decision: Decision
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class Coverage:
    """Rules that at least one case matched, per package."""

    total: list[tuple[str, str, str]]  # (package, rule, file:line)
    matched: set[tuple[str, str]]

    @property
    def missing(self) -> list[tuple[str, str, str]]:
        return [item for item in self.total if (item[0], item[1]) not in self.matched]

    @property
    def percent(self) -> float:
        if not self.total:
            return 100.0
        return 100.0 * (len(self.total) - len(self.missing)) / len(self.total)


class ExpectSchema(Schema):
    class Meta:
        unknown = RAISE

    decision = fields.Enum(Outcome, by_value=True)
    rule = fields.String(allow_none=True)
    reason = fields.String()
    expires_at = Expiry(data_key="expiresAt")
    approvers = fields.List(fields.String())
    auto_assigned = fields.Boolean(data_key="autoAssigned")

    @validates_schema
    def something_expected(self, data: dict[str, Any], **kwargs) -> None:
        if "decision" not in data and "auto_assigned" not in data:
            raise ValidationError(
                "expect a decision, autoAssigned (true or false), or both", field_name="decision"
            )
        if "decision" not in data and len(data) > 1:
            others = sorted(self.fields[name].data_key or name for name in data)
            raise ValidationError(
                f"{', '.join(o for o in others if o != 'autoAssigned')} needs a decision",
                field_name="decision",
            )

    @post_load
    def make(self, data: dict[str, Any], **kwargs) -> Expectation:
        if "approvers" in data:
            data["approvers"] = tuple(data["approvers"])
        data["rule_given"] = "rule" in data
        return Expectation(**data)


class CaseSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1))
    package = fields.String(required=True)
    subject = fields.Nested(SubjectSchema, required=True)
    request = fields.Nested(RequestSchema, load_default=RequestOptions)
    now = DecisionTime(required=True)
    expect = fields.Nested(ExpectSchema, required=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs) -> Case:
        return Case(**data)


class CaseFileSchema(Schema):
    class Meta:
        unknown = RAISE

    api_version = ApiVersion()
    tests = fields.List(fields.Nested(CaseSchema), required=True, validate=validate.Length(min=1))


def load_cases(directory: str | Path, bundle: Bundle) -> list[Case]:
    """Every case in `directory/tests/`, checked against the bundle's packages and rules.

    Raises:
        ProblemsError: with every problem in every test file.
    """
    root = Path(directory) / TESTS_DIR
    files = sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    problems: list[Problem] = []
    cases: list[Case] = []
    for path in files:
        try:
            document = parse_document(path.read_text(encoding="utf-8"), str(path))
            if not isinstance(document.data, dict):
                raise ProblemsError([document.problem((), "a test file has apiVersion and tests")])
            loaded = CaseFileSchema().load(document.data)
        except ProblemsError as err:
            problems.extend(err.problems)
            continue
        except ValidationError as err:
            problems.extend(document.problem(p, m) for p, m in flatten_messages(err.messages))
            continue
        for index, case in enumerate(loaded["tests"]):
            where = ("tests", index)
            case = Case(**{**case.__dict__, "file": str(path), "line": document.line_of(where)})
            if case.package not in bundle.packages:
                problems.append(
                    document.problem((*where, "package"), f"unknown package {case.package!r}")
                )
                continue
            if (
                case.expect.auto_assigned is not None
                and bundle.packages[case.package].auto_assign is None
            ):
                problems.append(
                    document.problem(
                        (*where, "expect", "autoAssigned"),
                        f"package {case.package!r} has no autoAssign",
                    )
                )
                continue
            rule = case.expect.rule
            known = {r.id for r in bundle.packages[case.package].rules}
            if rule is not None and rule not in known:
                problems.append(
                    document.problem(
                        (*where, "expect", "rule"),
                        f"package {case.package!r} has no rule {rule!r}",
                    )
                )
                continue
            cases.append(case)
    if problems:
        raise ProblemsError(problems)
    return cases


def run_cases(policy: Policy, cases: list[Case]) -> list[CaseResult]:
    """Every case, through the engine; autoAssign expectations through one AutoAssigner."""
    if not any(case.expect.auto_assigned is not None for case in cases):
        return [run_case(policy, case) for case in cases]
    with AutoAssigner(policy.bundle) as assigner:
        return [run_case(policy, case, assigner) for case in cases]


def run_case(policy: Policy, case: Case, assigner: AutoAssigner | None = None) -> CaseResult:
    """One case: the decision the engine makes, checked against what the case expects; an
    `autoAssigned` expectation is checked with `assigner`, which `run_cases` makes for the
    cases that need one."""
    decision = policy.decide(case.package, case.subject, case.request, now=case.now)
    result = CaseResult(case, decision)
    expect = case.expect
    if expect.decision is not None:
        result.failures.extend(_decision_failures(decision, expect))
    if expect.auto_assigned is not None:
        if assigner is None:
            raise ValueError(f"{case.where}: an autoAssigned case needs an AutoAssigner")
        matched = case.package in assigner.matches(case.subject, case.now)
        if matched is not expect.auto_assigned:
            result.failures.append(
                f"expected autoAssigned {str(expect.auto_assigned).lower()}, got "
                f"{str(matched).lower()} (the package's autoAssign.when "
                f"{'matches' if matched else 'does not match'} the subject)"
            )
    return result


def _decision_failures(decision: Decision, expect: Expectation) -> list[str]:
    failures = []
    got = f"{decision.outcome} (rule {decision.rule or '-'}: {decision.reason})"
    if decision.outcome is not expect.decision:
        failures.append(f"expected {expect.decision}, got {got}")
    if expect.rule_given and decision.rule != expect.rule:
        failures.append(f"expected rule {expect.rule or '-'}, got {decision.rule or '-'}")
    if expect.reason is not None and decision.reason != expect.reason:
        failures.append(f"expected reason {expect.reason!r}, got {decision.reason!r}")
    if expect.expires_at is not None:
        actual = _expiry(decision)
        if actual != expect.expires_at:
            failures.append(f"expected expiresAt {_shown(expect.expires_at)}, got {_shown(actual)}")
    if expect.approvers is not None:
        actual_approvers = decision.stages[0].resolved if decision.stages else ()
        if tuple(actual_approvers) != expect.approvers:
            failures.append(
                f"expected approvers {list(expect.approvers)}, got {list(actual_approvers)}"
            )
    return failures


def _expiry(decision: Decision) -> datetime | str | None:
    """When the decision's access ends: a moment, NEVER, or None without a lifetime."""
    if decision.lifetime is None:
        return None
    return decision.lifetime.expires_at or NEVER


def _shown(expiry: datetime | str | None) -> str:
    if expiry is None:
        return "none"
    return expiry if isinstance(expiry, str) else expiry.isoformat()


def coverage(bundle: Bundle, results: list[CaseResult]) -> Coverage:
    total = [
        (package.id, rule.id, f"{package.file}:{rule.line}" if rule.line else package.file)
        for package in bundle.packages.values()
        for rule in package.rules
    ]
    matched = {(r.case.package, rule) for r in results for rule in r.decision.matched}
    return Coverage(total, matched)
