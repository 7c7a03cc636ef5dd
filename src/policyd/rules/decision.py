"""Turn the engine's matched rules into a Decision: deny wins, then priority, then file order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from policyd.domain import (
    ApprovalStage,
    Decision,
    Outcome,
    RequestOptions,
    Subject,
)
from policyd.rules.engine import Engine
from policyd.rules.fact_text import fact_writer
from policyd.rules.facts import build_fact
from policyd.rules.lifetime import LifetimeError, resolve_lifetime, same_from_any_now
from policyd.rules.model import (
    AccessPackage,
    ApprovalPolicy,
    Bundle,
    LifetimePolicy,
    Question,
    Rule,
)
from policyd.rules.question import AnswerError, check_answers
from policyd.rules.rule_question import asked_questions, asking_id
from policyd.rules.timing import EARLIEST, LATEST, check_decision_time, parse_duration

NO_RULE_MATCHED = "no rule matched"
LIFETIME_UNRESOLVED = "the deciding rule's lifetime has no end after now, so access is denied"


class InvalidInputError(ValueError):
    """A decision input is malformed; `field` names it."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def choose(rules: Iterable[Rule], matched: Iterable[str]) -> Rule | None:
    """The deciding rule among `matched` ids, `rules` being in file order.

    Any matched deny wins over every approval; within the winning group the highest
    priority decides and, at equal priority, the rule written first.
    """
    ids = set(matched)
    hits = [rule for rule in rules if rule.id in ids]
    denies = [rule for rule in hits if rule.outcome is Outcome.DENY]
    pool = denies or hits
    if not pool:
        return None
    best = max(rule.priority for rule in pool)
    return next(rule for rule in pool if rule.priority == best)


def check_inputs(request: RequestOptions, now: datetime) -> None:
    """Reject inputs the rules cannot be evaluated on.

    Raises:
        InvalidInputError: naming the field.
    """
    try:
        check_decision_time(now)
    except ValueError as err:
        raise InvalidInputError("now", str(err)) from None
    if request.duration is not None:
        try:
            parse_duration(request.duration)
        except ValueError as err:
            raise InvalidInputError("request.duration", str(err)) from None


def decide(
    bundle: Bundle,
    engine: Engine,
    package_id: str,
    subject: Subject,
    request: RequestOptions,
    now: datetime,
) -> Decision:
    """Decide one request against `bundle`, whose compiled form `engine` holds.

    Raises:
        UnknownPackageError: the bundle has no such package.
        InvalidInputError: a malformed input.
        EngineClosedError: the engine was swapped out meanwhile.
    """
    plan = engine.plans.get(package_id)
    if plan is None or plan.bundle is not bundle:
        plan = engine.plans[package_id] = _Plan(bundle, bundle.package(package_id), engine)
    package = plan.package
    # The commonest inputs (UTC, in range, no duration) pass without the calls that check
    # and explain every other case.
    if now.tzinfo is not UTC or not EARLIEST <= now < LATEST or request.duration is not None:
        check_inputs(request, now)
    if plan.asks or request.answers:  # else there is nothing to check: see check_answers
        request = _answered(package, asked_of(package, engine, subject, request, now), request)
    matched_ids = engine.match_json(package_id, plan.write(subject, request, now))
    matched, rule = _order(package, plan.ranks, matched_ids)
    if rule is None:
        values = plan.no_match.copy()
        values["now"] = now
        return _adopt(values)
    fixed, policy, approval, same_lifetime = plan.rules[id(rule)]
    lifetime = None
    if same_lifetime is not None and not request.duration:
        lifetime = same_lifetime(now)
    elif policy is not None:
        try:
            lifetime = resolve_lifetime(policy, now, request.duration)
        except LifetimeError as err:
            # Access that would end before it starts, or never find its end, is not granted;
            # the rule is named so its author can mend it.
            return _deny(bundle, package, rule.id, matched, f"{LIFETIME_UNRESOLVED}: {err}", now)
    values = fixed.copy()
    values["matched"] = matched
    values["now"] = now
    values["lifetime"] = lifetime
    values["stages"] = _stages(approval, package, subject) if approval else ()
    return _adopt(values)


class _Plan:
    """What `decide` needs of one package besides its matches, worked out once per engine:
    each rule's part of a Decision that is the same in every decision it makes."""

    __slots__ = ("asks", "bundle", "no_match", "package", "ranks", "rules", "write")

    def __init__(self, bundle: Bundle, package: AccessPackage, engine: Engine):
        self.bundle = bundle
        self.package = package
        # Whether the package or one of its rules asks a question (then answers are checked).
        self.asks = bool(package.questions or any(rule.questions for rule in package.rules))
        self.ranks = engine.compiled.ranks.get(package.id)
        self.write = fact_writer(engine.compiled)
        common = {"package": package.id, "version": bundle.version.id, "template": _origin(package)}
        self.no_match = {
            **common,
            **{"outcome": Outcome.DENY, "rule": None, "matched": (), "reason": NO_RULE_MATCHED},
            **{"lifetime": None, "stages": (), "justification_required": False},
        }
        # id(rule) -> (the fixed fields, its lifetime policy, its approval, that policy's
        # lifetime as a function of now if it has one): by the rule itself, since ids may repeat
        self.rules: dict[int, tuple[dict[str, Any], LifetimePolicy | None, Any, Any]] = {}
        for rule in package.rules:
            approval = rule.approval if rule.outcome is Outcome.REQUIRE_APPROVAL else None
            fixed = {
                **common,
                "outcome": rule.outcome,
                "rule": rule.id,
                "reason": rule.reason or f"rule {rule.id!r} decided {rule.outcome}",
                "justification_required": bool(approval and approval.require_justification),
            }
            policy = None if rule.outcome is Outcome.DENY else rule.lifetime or package.lifetime
            lifetime = same_from_any_now(policy) if policy else None
            self.rules[id(rule)] = (fixed, policy or None, approval, lifetime)


def asked_of(
    package: AccessPackage,
    engine: Engine,
    subject: Subject,
    request: RequestOptions,
    now: datetime,
) -> tuple[Question, ...]:
    """The questions `subject` is asked: the package's, then those of its rules that apply to
    them, matched by `engine` on the rules' conditions without answers (docs/rules.md)."""
    if not any(rule.questions for rule in package.rules):
        return package.questions
    unanswered = replace(request, answers=None)
    facts = build_fact(engine.compiled, subject, unanswered, now)
    return asked_questions(package, engine.match(asking_id(package.id), facts))


def _answered(
    package: AccessPackage, asked: tuple[Question, ...], request: RequestOptions
) -> RequestOptions:
    """`request` with its answers checked against the questions `asked` and normalised
    (dates in ISO form).

    Raises:
        InvalidInputError: naming the field.
    """
    try:
        answers = check_answers(package, request.answers, asked)
    except AnswerError as err:
        raise InvalidInputError(err.field, err.message) from None
    if answers != (request.answers or {}):
        request = replace(request, answers=answers)
    return request


def _deny(
    bundle: Bundle,
    package: AccessPackage,
    rule: str | None,
    matched: tuple[str, ...],
    reason: str,
    now: datetime,
) -> Decision:
    """A denial for `reason`, naming the deciding rule if there is one."""
    return make_decision(
        outcome=Outcome.DENY,
        package=package.id,
        rule=rule,
        matched=matched,
        reason=reason,
        version=bundle.version.id,
        now=now,
        template=_origin(package),
        lifetime=None,
        stages=(),
        justification_required=False,
    )


_new = object.__new__


_set = object.__setattr__


def make_decision(**values: Any) -> Decision:
    """`Decision(**values)` with every field given (see `_adopt`)."""
    return _adopt(values)


def _adopt(values: dict[str, Any]) -> Decision:
    """A Decision whose fields are `values` (every field, in a dict nobody else holds), made
    without the frozen dataclass's `__init__`: it sets the eleven fields one
    `object.__setattr__` at a time, which was a fifth of a memo-off decision's instructions on
    the example policies (24.7k of 120.8k, callgrind). tests/rules/test_decision.py checks the
    result equals `Decision(**values)`."""
    decision = _new(Decision)
    _set(decision, "__dict__", values)
    return decision


def _order(
    package: AccessPackage, ranks: dict[str, tuple[int, int]] | None, matched_ids: frozenset[str]
) -> tuple[tuple[str, ...], Rule | None]:
    """The matched rule ids in file order, and the deciding rule (see `choose`)."""
    if ranks is None:
        matched = tuple(rule.id for rule in package.rules if rule.id in matched_ids)
        return matched, choose(package.rules, matched_ids)
    # As above, in steps per matched rule rather than per rule of the package.
    if len(matched_ids) <= 1:  # most decisions: one rule or none
        matched = tuple(matched_ids)
        return matched, package.rules[ranks[matched[0]][1]] if matched else None
    matched = tuple(sorted(matched_ids, key=lambda rule_id: ranks[rule_id][1]))
    best = min(matched_ids, key=ranks.__getitem__, default=None)
    return matched, None if best is None else package.rules[ranks[best][1]]


def _origin(package: AccessPackage) -> tuple[str, str] | None:
    """(template id, row) of a package a template made; None for a hand-written one."""
    if package.template is None:
        return None
    return package.template, package.template_row or ""


# approval policy id -> (the policy, the owners, its stages): stages that name no manager are
# the same for every subject, so they are made once per rule rather than per decision.
_FIXED_STAGES: dict[int, tuple[ApprovalPolicy, tuple[str, ...], tuple[ApprovalStage, ...]]] = {}
FIXED_STAGES_SIZE = 4096


def _stages(
    approval: ApprovalPolicy, package: AccessPackage, subject: Subject
) -> tuple[ApprovalStage, ...]:
    known = _FIXED_STAGES.get(id(approval))
    if known is not None and known[0] is approval and known[1] is package.owners:
        return known[2]
    stages = tuple(
        ApprovalStage(
            approvers=stage.approvers,
            timeout=stage.timeout,
            escalate_to=stage.escalate_to,
            resolved=tuple(_resolve(stage.approvers, package, subject)),
        )
        for stage in approval.stages
    )
    if not any("manager" in stage.approvers for stage in approval.stages):
        if len(_FIXED_STAGES) >= FIXED_STAGES_SIZE:
            _FIXED_STAGES.clear()
        # holding the policy and owners keeps their ids from being reused
        _FIXED_STAGES[id(approval)] = (approval, package.owners, stages)
    return stages


def _resolve(references: Iterable[str], package: AccessPackage, subject: Subject):
    seen = set()
    for ref in references:
        if ref == "manager":
            expanded = [f"user:{subject.manager}"] if subject.manager else []
        elif ref == "owners":
            expanded = list(package.owners)
        else:
            expanded = [ref]  # user:, group: and sponsors are expanded by the directory
        for item in expanded:
            if item not in seen:
                seen.add(item)
                yield item
