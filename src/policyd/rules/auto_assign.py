"""Auto-assignment in rule files: the `autoAssign` construct, and who matches it, by the engine."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validates_schema

from policyd.domain import Outcome, RequestOptions, Subject
from policyd.rules.compiler import EngineLimitError, compile_bundle
from policyd.rules.condition import ConditionError, parse_condition, walk
from policyd.rules.engine import Engine
from policyd.rules.facts import build_fact
from policyd.rules.inputs import Duration
from policyd.rules.model import AccessPackage, AutoAssignPolicy, Bundle, Rule, Version

# What an auto-assignment condition may not read, and why: it is evaluated when the
# directory changes, with no request, and what it grants must not change what it reads.
REFUSED = {
    "subject.packages": "held packages change with auto-assignment itself",
    "request.": "an auto-assignment has no request",
    "answers.": "an auto-assignment has no request, so nobody answers questions",
    "now": "it is evaluated when the directory changes, not on a clock",
}
RULESET = "auto-assign"  # the synthetic package that holds every package's condition
# The rule that auto-assignments' requests, decisions and assignments name: the rule-file
# key, which no rule id can be (ids are lower-case slugs); replay skips it.
AUTO_RULE = "autoAssign"


def _refusal(field: str) -> str | None:
    for prefix, why in REFUSED.items():
        if field == prefix or (prefix.endswith(".") and field.startswith(prefix)):
            return f"{field}: an auto-assignment condition may not read it ({why})"
    return None


class _Condition(fields.Field):
    """A `when:` of the condition language, limited to what the directory says."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            tree = parse_condition(value)
        except ConditionError as err:
            raise ValidationError([message for _, message in err.problems]) from None
        refused = sorted(
            {why for node in walk(tree) if (why := _refusal(getattr(node, "field", "")))}
        )
        if refused:
            raise ValidationError(refused)
        return tree


class AutoAssignSchema(Schema):
    """`package.autoAssign` (docs/rules.md, "Auto-assignment")."""

    class Meta:
        unknown = RAISE

    when = _Condition(required=True)
    grace = Duration(any_form=True, load_default=None)
    description = fields.String()

    @validates_schema
    def evaluable(self, data, **kwargs):
        if "when" not in data:
            return
        problem = engine_problem(data["when"])
        if problem:
            raise ValidationError(problem, field_name="when")

    @post_load
    def make(self, data, **kwargs):
        return AutoAssignPolicy(data["when"], data["grace"], data.get("description"))


def engine_problem(when) -> str | None:
    """Why durable_rules could not evaluate this condition, if it could not."""
    rule = Rule(id="auto", outcome=Outcome.AUTO_APPROVE, when=when)
    package = AccessPackage(id=RULESET, display_name=RULESET, rules=(rule,))
    try:
        compile_bundle(Bundle(packages={RULESET: package}, version=Version("0" * 64)))
    except EngineLimitError as err:
        return str(err)
    return None


def grace_of(policy: AutoAssignPolicy, now: datetime) -> datetime:
    """When access that stops matching at `now` ends (now, without a grace period)."""
    return now if policy.grace is None else now + policy.grace


_fingerprints: dict[str, dict[str, str]] = {}
_fingerprint_lock = threading.Lock()


def fingerprints(bundle: Bundle) -> dict[str, str]:
    """Package id -> a digest of its auto-assignment rule, for the packages that have one.

    Two versions whose digests differ for a package re-evaluate everyone for it. Kept per
    version (a pure function of it): a pass of the worker asks every time.
    """
    key = bundle.version.content_hash
    with _fingerprint_lock:
        known = _fingerprints.get(key)
    if known is not None:
        return known
    digests = {
        package.id: hashlib.sha256(repr(package.auto_assign).encode()).hexdigest()[:16]
        for package in bundle.packages.values()
        if package.auto_assign is not None
    }
    with _fingerprint_lock:
        if len(_fingerprints) > 8:
            _fingerprints.clear()
        _fingerprints[key] = digests
    return digests


class AutoAssigner:
    """Which packages' auto-assignment rules a subject matches, by the rules engine: one
    synthetic package whose rules are the packages' conditions, so one match answers for
    every package at once (close it)."""

    def __init__(self, bundle: Bundle):
        self.version = bundle.version.id
        self.policies: dict[str, AutoAssignPolicy] = {
            package_id: bundle.packages[package_id].auto_assign  # type: ignore[misc]
            for package_id in fingerprints(bundle)
        }
        rules = tuple(
            Rule(id=package_id, outcome=Outcome.AUTO_APPROVE, when=policy.when)
            for package_id, policy in self.policies.items()
        )
        synthetic = AccessPackage(id=RULESET, display_name=RULESET, rules=rules)
        self.compiled = compile_bundle(
            Bundle(packages={RULESET: synthetic} if rules else {}, version=bundle.version)
        )
        self.engine = Engine(self.compiled, memo_size=0) if rules else None

    def matches(self, subject: Subject, now: datetime) -> frozenset[str]:
        """The ids of the packages whose auto-assignment rule `subject` matches."""
        if self.engine is None:
            return frozenset()
        fact = build_fact(self.compiled, subject, RequestOptions(), now)
        return frozenset(self.engine.match(RULESET, fact))

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def __enter__(self) -> AutoAssigner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def changed_packages(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Packages whose auto-assignment rule was added, removed or changed."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
