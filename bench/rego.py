"""The benchmark's workloads in Rego, decided by regorus (gordon-to-regorus) compiled to its VM.

Each policyd package becomes one Rego package: `matched` collects the ids of the rules whose
condition holds, and `decision` picks the winner by a rank computed here from policyd's own
order (any deny first, then the highest priority, then file order), so Rego decides the whole
verdict as policyd does. Subjects are normalised as policyd's facts are (lower-cased domain and
type; empty values absent), since Rego neither lower-cases nor stringifies.

Rego traps met while translating (see also shared notes): `input.x != "v"` is undefined when
`x` is missing, while policyd's `ne` holds, so `ne` is written `not input.x == "v"`; regorus
refuses source lines over 1,024 characters, so every condition gets its own line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import regorus

from policyd.domain import Outcome, Subject

Verdict = tuple[Outcome, str | None]


def subject_document(subject: Subject) -> dict[str, Any]:
    """The subject as policyd's facts see it: lower-cased domain/type; empty values absent."""
    out: dict[str, Any] = {
        "id": subject.id,
        "type": str(subject.type).lower(),
        "groups": [g for g in subject.groups if g],
        "packages": [p for p in subject.packages if p],
    }
    optional = {
        "domain": subject.domain,
        "department": subject.department,
        "jobTitle": subject.job_title,
        "employeeType": subject.employee_type,
    }
    out.update((key, value) for key, value in optional.items() if value)
    return out


def rego_package(package_id: str) -> str:
    return "policyd.p_" + package_id.replace("-", "_")


def atom(field: str, op: str, value: Any) -> str:
    """One policyd condition on `subject.<field>` as a Rego expression."""
    attr = f"input.subject.{field}"
    literal = json.dumps(list(value) if isinstance(value, tuple | list) else value)
    if op == "contains":
        return f"{json.dumps(value)} in {attr}"
    if op == "not_contains":
        return f"not {json.dumps(value)} in {attr}"
    if op == "in":
        return f"{attr} in {literal}"
    if op == "eq":
        return f"{attr} == {literal}"
    if op == "ne":
        return f"not {attr} == {literal}"  # holds when the field is absent, as policyd's ne
    raise ValueError(f"no Rego for {op}")


def module(
    package_id: str,
    bodies: Sequence[tuple[str, Sequence[Sequence[str]]]],
    precedence: Iterable[str],
) -> str:
    """A Rego module: `matched contains ID if {...}` once per alternative body of each rule,
    then `decision`, the id of the best-ranked matched rule (null when none matched)."""
    lines = [f"package {rego_package(package_id)}", "", "import rego.v1", ""]
    for rule_id, alternatives in bodies:
        for body in alternatives:
            lines.append(f"matched contains {json.dumps(rule_id)} if {{")
            lines += [f"\t{expression}" for expression in body]
            lines.append("}")
            lines.append("")
    order = list(precedence)
    lines.append("ranks := {")
    lines += [f"\t{json.dumps(rule_id)}: {n}," for n, rule_id in enumerate(order)]
    lines.append("}")
    lines.append("order := [")
    lines += [f"\t{json.dumps(rule_id)}," for rule_id in order]
    lines.append("]")
    lines.append("")
    lines.append("default decision := null")
    lines.append("")
    lines.append("decision := order[min({ranks[id] | some id in matched})] if count(matched) > 0")
    return "\n".join(lines) + "\n"


class RegoPolicy:
    """Rego modules compiled once into a regorus RVM program, one entry point per package."""

    def __init__(self, modules: dict[str, str], outcomes: dict[str, dict[str, Outcome]]):
        entry_points = [f"data.{rego_package(p)}.decision" for p in modules]
        sources = [(f"{p}.rego", text) for p, text in modules.items()]
        program = regorus.Program.compile_from_modules("{}", sources, entry_points)
        self.vm = regorus.Rvm()
        self.vm.load_program(program)
        self.entry = {p: f"data.{rego_package(p)}.decision" for p in modules}
        self.outcomes = outcomes

    @staticmethod
    def input_json(subject: Subject) -> str:
        return json.dumps({"subject": subject_document(subject)})

    def execute(self, package_id: str, input_json: str) -> Verdict:
        self.vm.set_input_json(input_json)
        rule = json.loads(self.vm.execute_entry_point(self.entry[package_id]))
        if rule is None:
            return Outcome.DENY, None
        return self.outcomes[package_id][rule], rule

    def decide(self, package_id: str, subject: Subject) -> Verdict:
        return self.execute(package_id, self.input_json(subject))


# -- workload 1: the example policies, hand-translated like the Cedar text -------------------

ELIGIBLE = "Group.ScopeA.Readers.Eligible"

EXAMPLE_BODIES: dict[str, list[tuple[str, list[list[str]]]]] = {
    "merger-collaboration": [
        ("terminated-users", [[atom("employeeType", "eq", "terminated")]]),
        ("acquired-company", [[atom("domain", "eq", "fabrikam.com")]]),
        (
            "other-external-users",
            [[atom("type", "eq", "guest"), atom("domain", "ne", "fabrikam.com")]],
        ),
    ],
    "payments-entry": [
        (
            "accounts-payable-clerks",
            [
                [
                    atom("department", "eq", "Finance"),
                    atom("jobTitle", "in", ("AP Clerk", "AP Specialist")),
                ]
            ],
        ),
        ("incompatible:quarter-end-close", [[atom("packages", "contains", "quarter-end-close")]]),
    ],
    "quarter-end-close": [
        ("finance-staff", [[atom("department", "eq", "Finance"), atom("type", "eq", "member")]]),
        ("incompatible:payments-entry", [[atom("packages", "contains", "payments-entry")]]),
    ],
    "sales-support": [
        ("guests-cannot-request", [[atom("type", "eq", "guest")]]),
        ("sales-employees", [[atom("department", "eq", "Sales"), atom("type", "eq", "member")]]),
    ],
    "scope-a-readers": [
        ("eligible-members", [[atom("groups", "contains", ELIGIBLE)]]),
        ("everyone-else", [[atom("groups", "not_contains", ELIGIBLE)]]),
    ],
}


def bodies_of(when: Any) -> list[list[str]]:
    """The generated workload's Atom/Combo condition as alternative Rego bodies."""
    items = getattr(when, "items", None)
    if items is None:
        return [[atom(when.field, when.op, when.value)]]
    if when.kind == "all":
        return [[atom(a.field, a.op, a.value) for a in items]]
    return [[atom(a.field, a.op, a.value)] for a in items]
