"""Per-decision speed: policyd (full path, raw engine) vs cedarpy, Rego (regorus VM) and plain
Python, verified to agree on every input before anything is timed."""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import operator
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import cedarpy
import yaml

from policyd.domain import Outcome, RequestOptions, Subject, UserType
from policyd.rules import Bundle, Policy, load_bundle, load_texts
from policyd.rules.facts import build_fact

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rego import EXAMPLE_BODIES, RegoPolicy, bodies_of, module, subject_document

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
REQUEST = RequestOptions()
DENY, AUTO, REQUIRE = Outcome.DENY, Outcome.AUTO_APPROVE, Outcome.REQUIRE_APPROVAL
POLICIES_DIR = Path(__file__).resolve().parent.parent / "policies"

Predicate = Callable[[Subject], bool]
Verdict = tuple[Outcome, str | None]  # outcome and deciding rule id (None: default deny)


# --- plain Python: rules in file order, decided by deny-wins / priority / file order -----------


@dataclass(frozen=True)
class PyRule:
    id: str
    outcome: Outcome
    priority: int
    holds: Predicate


@dataclass(frozen=True)
class PyPackage:
    """One package's rules; `precedence` puts the rule that would win first."""

    rules: tuple[PyRule, ...]
    precedence: tuple[PyRule, ...] = field(init=False)
    rank: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        order = sorted(
            enumerate(self.rules),
            key=lambda item: (item[1].outcome is not DENY, -item[1].priority, item[0]),
        )
        precedence = tuple(rule for _, rule in order)
        object.__setattr__(self, "precedence", precedence)
        object.__setattr__(self, "rank", {rule.id: n for n, rule in enumerate(precedence)})

    def decide(self, subject: Subject) -> Verdict:
        for rule in self.precedence:
            if rule.holds(subject):
                return rule.outcome, rule.id
        return DENY, None

    def matched(self, subject: Subject) -> frozenset[str]:
        return frozenset(rule.id for rule in self.rules if rule.holds(subject))

    def pick(self, ids: Iterable[str]) -> Verdict:
        """The verdict among matched rule ids (used to read Cedar's determining policies)."""
        ranks = [self.rank[i] for i in ids]
        if not ranks:
            return DENY, None
        rule = self.precedence[min(ranks)]
        return rule.outcome, rule.id


# --- cedarpy: one pre-parsed PolicySet, subject attributes passed as request context ----------


class CedarPolicy:
    """Cedar policies parsed once; forbid = deny rule, permit = approving rule, @id = rule id."""

    def __init__(self, text: str, packages: dict[str, PyPackage]):
        self.policies = cedarpy.PolicySet.from_str(text)
        self.entities = cedarpy.Entities.from_json_str("[]")
        self.packages = packages

    @staticmethod
    def request(package_id: str, subject: Subject) -> dict[str, Any]:
        return {
            "principal": {"type": "User", "id": subject.id},
            "action": {"type": "Action", "id": "request"},
            "resource": {"type": "Package", "id": package_id},
            "context": {"subject": subject_document(subject)},
        }

    def authorize(self, request: dict[str, Any]) -> cedarpy.AuthzResult:
        return cedarpy.is_authorized(request, self.policies, self.entities)

    def verdict(self, package_id: str, result: cedarpy.AuthzResult) -> Verdict:
        # Allow: the satisfied permits; Deny: the satisfied forbids (none: default deny).
        rule_ids = result.diagnostics.id_annotations_by_reason.values()
        return self.packages[package_id].pick(rule_ids)

    def decide(self, package_id: str, subject: Subject) -> Verdict:
        return self.verdict(package_id, self.authorize(self.request(package_id, subject)))


# --- workload 1: the example policies, hand-translated ---------------------------------------

ELIGIBLE = "Group.ScopeA.Readers.Eligible"

EXAMPLE_RULES: dict[str, PyPackage] = {
    "merger-collaboration": PyPackage(
        (
            PyRule("terminated-users", DENY, 0, lambda s: s.employee_type == "terminated"),
            PyRule("acquired-company", AUTO, 100, lambda s: s.domain == "fabrikam.com"),
            PyRule(
                "other-external-users",
                REQUIRE,
                0,
                lambda s: s.type == UserType.GUEST and s.domain != "fabrikam.com",
            ),
        )
    ),
    "payments-entry": PyPackage(
        (
            PyRule(
                "accounts-payable-clerks",
                REQUIRE,
                0,
                lambda s: (
                    s.department == "Finance" and s.job_title in ("AP Clerk", "AP Specialist")
                ),
            ),
            PyRule(
                "incompatible:quarter-end-close",
                DENY,
                0,
                lambda s: "quarter-end-close" in s.packages,
            ),
        )
    ),
    "quarter-end-close": PyPackage(
        (
            PyRule(
                "finance-staff",
                REQUIRE,
                0,
                lambda s: s.department == "Finance" and s.type == UserType.MEMBER,
            ),
            PyRule(
                "incompatible:payments-entry", DENY, 0, lambda s: "payments-entry" in s.packages
            ),
        )
    ),
    "sales-support": PyPackage(
        (
            PyRule("guests-cannot-request", DENY, 0, lambda s: s.type == UserType.GUEST),
            PyRule(
                "sales-employees",
                REQUIRE,
                0,
                lambda s: s.department == "Sales" and s.type == UserType.MEMBER,
            ),
        )
    ),
    "scope-a-readers": PyPackage(
        (
            PyRule("eligible-members", AUTO, 100, lambda s: ELIGIBLE in s.groups),
            PyRule("everyone-else", REQUIRE, 0, lambda s: ELIGIBLE not in s.groups),
        )
    ),
}

EXAMPLE_CEDAR = """
@id("terminated-users")
forbid (principal, action == Action::"request", resource == Package::"merger-collaboration")
when { context.subject has employeeType && context.subject.employeeType == "terminated" };

@id("acquired-company")
permit (principal, action == Action::"request", resource == Package::"merger-collaboration")
when { context.subject has domain && context.subject.domain == "fabrikam.com" };

@id("other-external-users")
permit (principal, action == Action::"request", resource == Package::"merger-collaboration")
when {
  context.subject.type == "guest" &&
  !(context.subject has domain && context.subject.domain == "fabrikam.com")
};

@id("accounts-payable-clerks")
permit (principal, action == Action::"request", resource == Package::"payments-entry")
when {
  context.subject has department && context.subject.department == "Finance" &&
  context.subject has jobTitle && ["AP Clerk", "AP Specialist"].contains(context.subject.jobTitle)
};

@id("incompatible:quarter-end-close")
forbid (principal, action == Action::"request", resource == Package::"payments-entry")
when { context.subject.packages.contains("quarter-end-close") };

@id("finance-staff")
permit (principal, action == Action::"request", resource == Package::"quarter-end-close")
when {
  context.subject has department && context.subject.department == "Finance" &&
  context.subject.type == "member"
};

@id("incompatible:payments-entry")
forbid (principal, action == Action::"request", resource == Package::"quarter-end-close")
when { context.subject.packages.contains("payments-entry") };

@id("guests-cannot-request")
forbid (principal, action == Action::"request", resource == Package::"sales-support")
when { context.subject.type == "guest" };

@id("sales-employees")
permit (principal, action == Action::"request", resource == Package::"sales-support")
when {
  context.subject has department && context.subject.department == "Sales" &&
  context.subject.type == "member"
};

@id("eligible-members")
permit (principal, action == Action::"request", resource == Package::"scope-a-readers")
when { context.subject.groups.contains("Group.ScopeA.Readers.Eligible") };

@id("everyone-else")
permit (principal, action == Action::"request", resource == Package::"scope-a-readers")
when { !context.subject.groups.contains("Group.ScopeA.Readers.Eligible") };
"""


def example_inputs(rng: random.Random, count: int) -> list[tuple[str, Subject]]:
    packages = sorted(EXAMPLE_RULES)
    held = ("payments-entry", "quarter-end-close", "sales-support")
    inputs = []
    for n in range(count):
        domain = rng.choice(["contoso.com", "fabrikam.com", "Fabrikam.COM", "tailspin.example"])
        groups = {g for g in ("Group.Other", "Group.Eng") if rng.random() < 0.3}
        if rng.random() < 0.35:
            groups.add(ELIGIBLE)
        subject = Subject(
            id=f"u{n:04d}",
            email=None if rng.random() < 0.05 else f"user{n}@{domain}",
            type=UserType.GUEST if rng.random() < 0.25 else UserType.MEMBER,
            groups=frozenset(groups),
            department=rng.choice(["Finance", "Finance", "Sales", "Engineering", None]),
            job_title=rng.choice(["AP Clerk", "AP Specialist", "Analyst", None]),
            employee_type="terminated" if rng.random() < 0.08 else rng.choice(["employee", None]),
            packages=frozenset(p for p in held if rng.random() < 0.15),
        )
        inputs.append((rng.choice(packages), subject))
    return inputs


# --- workload 2: a generated 100-rule package, rendered to YAML, Cedar and Python ------------

GEN_PACKAGE = "generated"


@dataclass(frozen=True)
class Atom:
    field: Literal["groups", "domain", "department", "type"]
    op: Literal["contains", "not_contains", "eq", "ne", "in"]
    value: str | tuple[str, ...]


@dataclass(frozen=True)
class Combo:
    kind: Literal["all", "any"]
    items: tuple[Atom, ...]


@dataclass(frozen=True)
class GenRule:
    id: str
    outcome: Outcome
    priority: int
    when: Atom | Combo


def generate_rules(rng: random.Random, count: int) -> list[GenRule]:
    def group() -> str:
        return f"G{rng.randrange(40)}"

    def domain() -> str:
        return f"d{rng.randrange(20)}.example"

    def departments(k: int) -> tuple[str, ...]:
        return tuple(f"D{d}" for d in rng.sample(range(15), k))

    rules = []
    for n in range(count):
        roll = rng.random()
        when: Atom | Combo
        if roll < 0.25:
            when = Atom("groups", "contains", group())
        elif roll < 0.45:
            when = Atom("domain", "eq", domain())
        elif roll < 0.65:
            when = Atom("department", "in", departments(3))
        elif roll < 0.80:
            when = Combo(
                "all",
                (Atom("groups", "contains", group()), Atom("department", "in", departments(2))),
            )
        elif roll < 0.90:
            when = Combo(
                "any", (Atom("domain", "eq", domain()), Atom("groups", "contains", group()))
            )
        elif roll < 0.95:
            when = Combo(
                "all",
                (Atom("department", "in", departments(4)), Atom("groups", "not_contains", group())),
            )
        else:
            when = Combo("all", (Atom("type", "eq", "guest"), Atom("domain", "ne", domain())))
        outcome = DENY if rng.random() < 0.12 else rng.choice([AUTO, REQUIRE, REQUIRE])
        priority = rng.choice([0, 0, 0, 10, 20, 50, 100])
        rules.append(GenRule(f"r{n:03d}", outcome, priority, when))
    return rules


def yaml_condition(cond: Atom | Combo) -> dict[str, Any]:
    if isinstance(cond, Combo):
        return {cond.kind: [yaml_condition(item) for item in cond.items]}
    value = list(cond.value) if isinstance(cond.value, tuple) else cond.value
    return {f"subject.{cond.field}": {cond.op: value}}


def rule_file(rules: list[GenRule]) -> str:
    yaml_rules = []
    for rule in rules:
        then: dict[str, Any] = {"decision": rule.outcome.value, "reason": f"generated {rule.id}"}
        if rule.outcome is REQUIRE:
            then["approval"] = {"stages": [{"approvers": [f"group:Approvers.{rule.id}"]}]}
        yaml_rules.append(
            {
                "id": rule.id,
                "priority": rule.priority,
                "when": yaml_condition(rule.when),
                "then": then,
            }
        )
    document = {
        "apiVersion": "policyd/v1",
        "package": {
            "id": GEN_PACKAGE,
            "displayName": "Generated 100-rule package",
            "lifetime": {"duration": "PT8H"},
            "rules": yaml_rules,
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def cedar_condition(cond: Atom | Combo) -> str:
    if isinstance(cond, Combo):
        joiner = " && " if cond.kind == "all" else " || "
        return "(" + joiner.join(cedar_condition(item) for item in cond.items) + ")"
    attr = f"context.subject.{cond.field}"
    if cond.field == "groups":
        test = f"{attr}.contains({json.dumps(cond.value)})"
        return test if cond.op == "contains" else f"!{test}"
    if isinstance(cond.value, tuple):  # `in`
        return (
            f"(context.subject has {cond.field} && {json.dumps(list(cond.value))}.contains({attr}))"
        )
    test = f"(context.subject has {cond.field} && {attr} == {json.dumps(cond.value)})"
    return test if cond.op == "eq" else f"!{test}"  # policyd: `ne` holds when the field is absent


def cedar_text(package_id: str, rules: list[GenRule]) -> str:
    return "\n".join(
        f'@id("{rule.id}")\n'
        f"{'forbid' if rule.outcome is DENY else 'permit'} (principal, "
        f'action == Action::"request", resource == Package::"{package_id}")\n'
        f"when {{ {cedar_condition(rule.when)} }};\n"
        for rule in rules
    )


def python_condition(cond: Atom | Combo) -> Predicate:
    if isinstance(cond, Combo):
        parts = tuple(python_condition(item) for item in cond.items)
        if cond.kind == "all":
            return lambda s: all(part(s) for part in parts)
        return lambda s: any(part(s) for part in parts)
    value = cond.value
    if cond.field == "groups":
        if cond.op == "contains":
            return lambda s: value in s.groups
        return lambda s: value not in s.groups
    text = operator.attrgetter(cond.field)  # domain, department or type
    if isinstance(value, tuple):
        options = frozenset(value)
        return lambda s: text(s) in options
    if cond.op == "eq":
        return lambda s: text(s) == value
    return lambda s: text(s) != value


def generated_inputs(rng: random.Random, count: int) -> list[tuple[str, Subject]]:
    inputs = []
    for n in range(count):
        subject = Subject(
            id=f"g{n:04d}",
            email=f"user{n}@d{rng.randrange(30)}.example",
            type=UserType.GUEST if rng.random() < 0.1 else UserType.MEMBER,
            groups=frozenset(f"G{rng.randrange(60)}" for _ in range(rng.randrange(5))),
            department=rng.choice([*(f"D{d}" for d in range(25)), None]),
        )
        inputs.append((GEN_PACKAGE, subject))
    return inputs


# --- workloads, verification, timing ----------------------------------------------------------


@dataclass
class Workload:
    name: str
    bundle: Bundle
    packages: dict[str, PyPackage]
    cedar: str
    inputs: list[tuple[str, Subject]]
    rego: dict[str, str]  # package id -> Rego module

    def rego_policy(self) -> RegoPolicy:
        outcomes = {
            package_id: {rule.id: rule.outcome for rule in package.rules}
            for package_id, package in self.packages.items()
        }
        return RegoPolicy(self.rego, outcomes)


def build_workloads(seed: int, subjects: int, rules: int) -> list[Workload]:
    rng = random.Random(seed)
    examples = Workload(
        "examples",
        load_bundle(POLICIES_DIR),
        EXAMPLE_RULES,
        EXAMPLE_CEDAR,
        example_inputs(rng, subjects),
        {
            package_id: module(
                package_id,
                EXAMPLE_BODIES[package_id],
                [rule.id for rule in EXAMPLE_RULES[package_id].precedence],
            )
            for package_id in EXAMPLE_RULES
        },
    )
    spec = generate_rules(rng, rules)
    package = PyPackage(
        tuple(PyRule(r.id, r.outcome, r.priority, python_condition(r.when)) for r in spec)
    )
    generated = Workload(
        f"generated-{rules}",
        load_texts({"gen.yaml": rule_file(spec)}),
        {GEN_PACKAGE: package},
        cedar_text(GEN_PACKAGE, spec),
        generated_inputs(rng, subjects),
        {
            GEN_PACKAGE: module(
                GEN_PACKAGE,
                [(r.id, bodies_of(r.when)) for r in spec],
                [rule.id for rule in package.precedence],
            )
        },
    )
    return [examples, generated]


def verify(workload: Workload, policy: Policy, cedar: CedarPolicy, rego: RegoPolicy) -> list[str]:
    """Check every implementation against policyd on every input; return the disagreements."""
    problems = []
    counts = {"cedarpy": 0, "rego": 0, "plain-python": 0, "engine.match": 0}
    for package_id, subject in workload.inputs:
        decision = policy.decide(package_id, subject, REQUEST, now=NOW)
        expected: Verdict = (decision.outcome, decision.rule)
        package = workload.packages[package_id]
        engine = policy.engine_for(package_id)
        fact = build_fact(engine.compiled, subject, REQUEST, NOW)
        engine_matched = engine.match(package_id, fact)
        result = cedar.authorize(cedar.request(package_id, subject))
        cedar_verdict = cedar.verdict(package_id, result)
        rego_verdict = rego.decide(package_id, subject)
        checks = {
            "rego": rego_verdict == expected,
            "cedarpy": cedar_verdict == expected
            and result.allowed == (decision.outcome is not DENY)
            and not result.diagnostics.errors,
            "plain-python": package.decide(subject) == expected
            and package.matched(subject) == frozenset(decision.matched),
            "engine.match": engine_matched == frozenset(decision.matched),
        }
        for name, ok in checks.items():
            counts[name] += ok
            if not ok and len(problems) < 10:
                problems.append(
                    f"  {workload.name} {package_id} {subject}: policyd {expected} "
                    f"matched={sorted(decision.matched)}; cedarpy {cedar_verdict} "
                    f"allowed={result.allowed} errors={result.diagnostics.errors}; "
                    f"rego {rego_verdict}; "
                    f"python {package.decide(subject)}; engine.match {sorted(engine_matched)}"
                )
    total = len(workload.inputs)
    outcomes = sorted(
        {str(policy.decide(p, s, REQUEST, now=NOW).outcome) for p, s in workload.inputs}
    )
    summary = ", ".join(f"{name} {ok}/{total}" for name, ok in counts.items())
    print(f"verify {workload.name}: agree with policyd on {summary} (outcomes seen: {outcomes})")
    return problems


@dataclass(frozen=True)
class Stats:
    workload: str
    implementation: str
    calls: int
    decisions_per_s: float
    median_us: float
    p99_us: float


def measure(
    workload: str,
    calls: list[tuple[str, Callable[[int], object]]],
    size: int,
    args: argparse.Namespace,
) -> list[Stats]:
    """Time each implementation call by call, interleaved in rounds so background load is shared."""
    for _, call in calls:
        for k in range(args.warmup):
            call(k % size)
    clock = time.perf_counter_ns
    samples: list[list[int]] = [[] for _ in calls]
    spent = [0] * len(calls)
    budget = int(args.max_seconds * 1e9)
    per_round = max(1, math.ceil(args.n / args.rounds))
    for _ in range(args.rounds):
        for index, (_, call) in enumerate(calls):
            mine = samples[index]
            todo = min(per_round, args.n - len(mine))
            if todo <= 0 or spent[index] >= budget:
                continue
            gc.collect()
            offset = len(mine)
            round_start = clock()
            for k in range(offset, offset + todo):
                start = clock()
                call(k % size)
                mine.append(clock() - start)
            spent[index] += clock() - round_start
    return [
        summarise(workload, label, times) for (label, _), times in zip(calls, samples, strict=True)
    ]


def summarise(workload: str, label: str, samples: list[int]) -> Stats:
    samples = sorted(samples)
    calls = len(samples)
    p99 = samples[max(0, math.ceil(0.99 * calls) - 1)]
    median = (samples[(calls - 1) // 2] + samples[calls // 2]) / 2
    return Stats(workload, label, calls, calls / (sum(samples) / 1e9), median / 1e3, p99 / 1e3)


def implementations(
    workload: Workload, policy: Policy, unmemoised: Policy, cedar: CedarPolicy, rego: RegoPolicy
) -> list[tuple[str, Callable[[int], object]]]:
    ids = [package_id for package_id, _ in workload.inputs]
    subjects = [subject for _, subject in workload.inputs]
    engines = [policy.engine_for(p) for p in ids]  # each package is compiled on its own
    pairs = zip(engines, subjects, strict=True)
    facts = [build_fact(engine.compiled, s, REQUEST, NOW) for engine, s in pairs]
    requests = [cedar.request(p, s) for p, s in workload.inputs]
    inputs = [rego.input_json(s) for s in subjects]
    rules = [workload.packages[p] for p in ids]

    def policyd_full(i: int) -> object:
        return policy.decide(ids[i], subjects[i], REQUEST, now=NOW)

    def policyd_unmemoised(i: int) -> object:
        return unmemoised.decide(ids[i], subjects[i], REQUEST, now=NOW)

    def rego_full(i: int) -> object:
        return rego.decide(ids[i], subjects[i])

    def rego_prebuilt(i: int) -> object:
        return rego.execute(ids[i], inputs[i])

    def policyd_engine(i: int) -> object:
        return engines[i].match(ids[i], facts[i])

    def cedar_full(i: int) -> object:
        return cedar.decide(ids[i], subjects[i])

    def cedar_prebuilt(i: int) -> object:
        return cedar.verdict(ids[i], cedar.authorize(requests[i]))

    def plain_python(i: int) -> object:
        return rules[i].decide(subjects[i])

    return [
        ("policyd full: Policy.decide", policyd_full),
        ("policyd full, match memo off", policyd_unmemoised),
        ("policyd raw: engine.match(prebuilt fact)", policyd_engine),
        ("rego (regorus VM): Subject -> input + execute", rego_full),
        ("rego (regorus VM): execute(prebuilt input)", rego_prebuilt),
        ("cedarpy: Subject -> request + authorize", cedar_full),
        ("cedarpy: authorize(prebuilt request)", cedar_prebuilt),
        ("plain Python", plain_python),
    ]


def print_table(stats: list[Stats]) -> None:
    header = ("workload", "implementation", "calls", "decisions/s", "median us", "p99 us")
    rows = [
        (
            s.workload,
            s.implementation,
            f"{s.calls}",
            f"{s.decisions_per_s:,.0f}",
            f"{s.median_us:.1f}",
            f"{s.p99_us:.1f}",
        )
        for s in stats
    ]
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    for n, row in enumerate([header, *rows]):
        cells = [
            cell.ljust(width) if c < 2 else cell.rjust(width)
            for c, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def ratios(stats: list[Stats]) -> dict[str, dict[str, float]]:
    """policyd's full path (match memo on and off) against cedarpy and Rego, each from a
    Subject, per workload: throughput ratios (above 1: policyd decides more per second)."""
    out = {}
    for workload in dict.fromkeys(s.workload for s in stats):
        rows = {s.implementation: s for s in stats if s.workload == workload}
        full = rows["policyd full: Policy.decide"]
        unmemoised = rows["policyd full, match memo off"]
        cedar = rows["cedarpy: Subject -> request + authorize"]
        rego = rows["rego (regorus VM): Subject -> input + execute"]
        out[workload] = {
            "throughput_policyd_over_cedarpy": full.decisions_per_s / cedar.decisions_per_s,
            "median_policyd_over_cedarpy": full.median_us / cedar.median_us,
            "throughput_policyd_over_rego": full.decisions_per_s / rego.decisions_per_s,
            "throughput_policyd_memo_off_over_rego": (
                unmemoised.decisions_per_s / rego.decisions_per_s
            ),
            # Medians resist a loaded machine's stalls, which throughput (a mean) does not.
            "median_rego_over_policyd": rego.median_us / full.median_us,
            "median_rego_over_policyd_memo_off": rego.median_us / unmemoised.median_us,
        }
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000, help="timed calls per row (default 20000)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls per row first")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=4.0,
        help="timed seconds per row; later rounds are skipped once spent (default 4)",
    )
    parser.add_argument("--subjects", type=int, default=1000, help="seeded subjects per workload")
    parser.add_argument("--rules", type=int, default=100, help="rules in the generated package")
    parser.add_argument("--seed", type=int, default=20260105)
    parser.add_argument(
        "--json", nargs="?", const="-", metavar="PATH", help="also dump numbers (stdout if no PATH)"
    )
    args = parser.parse_args(argv)
    if min(args.n, args.rounds, args.subjects, args.rules) < 1 or args.max_seconds <= 0:
        parser.error("--n, --rounds, --subjects, --rules and --max-seconds must be positive")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    packages = ("durable-rules", "cedarpy", "gordon-to-regorus")
    versions = {p: importlib.metadata.version(p) for p in packages}
    print(
        f"python {sys.version.split()[0]}, durable-rules {versions['durable-rules']}, "
        f"cedarpy {versions['cedarpy']} (PolicySet parsed once, reused per call), "
        f"gordon-to-regorus {versions['gordon-to-regorus']} (compiled once to its VM); "
        f"now={NOW:%FT%TZ}"
    )
    workloads = build_workloads(args.seed, args.subjects, args.rules)
    prepared = []
    problems: list[str] = []
    for workload in workloads:
        policy = Policy(workload.bundle)
        unmemoised = Policy(workload.bundle, memo_size=0)
        cedar = CedarPolicy(workload.cedar, workload.packages)
        rego = workload.rego_policy()
        unmatched = sum(not workload.packages[p].matched(s) for p, s in workload.inputs)
        print(
            f"{workload.name}: {workload.bundle.rule_count} rules, {len(workload.inputs)} "
            f"seeded inputs ({unmatched} match no rule: default deny)"
        )
        problems += verify(workload, policy, cedar, rego)
        prepared.append((workload, policy, unmemoised, cedar, rego))
    if problems:
        print(
            "FAIL: implementations disagree with policyd; timings would be meaningless:",
            file=sys.stderr,
        )
        print("\n".join(problems), file=sys.stderr)
        return 1
    stats = []
    for workload, *engines in prepared:
        calls = implementations(workload, *engines)
        stats += measure(workload.name, calls, len(workload.inputs), args)
    print()
    print_table(stats)
    print()
    compared = ratios(stats)
    for name, ratio in compared.items():
        speed = ratio["throughput_policyd_over_cedarpy"]
        verdict = "policyd faster" if speed >= 1 else "cedarpy faster"
        print(
            f"{name}: policyd full / cedarpy throughput = {speed:.2f}x ({verdict}; "
            f"median latency ratio {ratio['median_policyd_over_cedarpy']:.2f}x)"
        )
        print(
            f"{name}: policyd full / rego (regorus VM) throughput = "
            f"{ratio['throughput_policyd_over_rego']:.2f}x with the match memo, "
            f"{ratio['throughput_policyd_memo_off_over_rego']:.2f}x without "
            "(target >= 1.00x); by median latency "
            f"{ratio['median_rego_over_policyd']:.2f}x and "
            f"{ratio['median_rego_over_policyd_memo_off']:.2f}x"
        )
    for _workload, policy, unmemoised, *_ in prepared:
        policy.close()
        unmemoised.close()
    if args.json:
        dump = {
            "versions": versions,
            "n": args.n,
            "inputs": {w.name: len(w.inputs) for w in workloads},
            "results": [vars(s) for s in stats],
            "ratios": compared,
        }
        text = json.dumps(dump, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
