"""Compilation of conditions into durable_rules JSON."""

from __future__ import annotations

from policyd.rules.compiler import ALWAYS_ACTION, compile_bundle, number_value
from policyd.rules.condition import parse_condition
from policyd.rules.loader import load_texts
from tests.conftest import rule_file

TEXT = rule_file(
    """
    apiVersion: policyd/v1
    package:
      id: pkg
      displayName: Package
      lifetime: {duration: P1D}
      rules:
        - id: a
          when: {subject.department: {ne: Sales}, subject.groups: {not_contains: G}}
          then: {decision: auto_approve}
        - id: b
          when: {not: {any: [{subject.attributes.level: {gt: 3}}, {now: {within: "* 9 * * *"}}]}}
          then: {decision: deny}
    """
)


def compiled():
    bundle = load_texts({"p.yaml": TEXT})
    return bundle, compile_bundle(bundle)


def test_one_ruleset_per_package_named_with_the_version():
    """Each package compiles to a ruleset named package@version with an always-true rule."""
    bundle, result = compiled()
    name = f"pkg@{bundle.version.id}"
    assert result.ruleset_of == {"pkg": name}
    assert set(result.rulesets[name]) == {"p0r0", "p0r1", ALWAYS_ACTION}
    assert result.rulesets[name][ALWAYS_ACTION] == {"all": [{"m": {"$ex": {"pd": 1}}}]}
    assert result.rule_of == {"p0r0": ("pkg", "a"), "p0r1": ("pkg", "b")}


def test_ne_also_matches_a_missing_key_and_lists_use_iall():
    """`ne` compiles to $neq OR $nex; not_contains to $iall $neq (lists carry a sentinel)."""
    _, result = compiled()
    expr = next(iter(result.rulesets.values()))["p0r0"]["all"][0]["m"]
    assert expr == {
        "$and": [
            {
                "$or": [
                    {"$neq": {"subject__department": "v:Sales"}},
                    {"$nex": {"subject__department": 1}},
                ]
            },
            {"$iall": {"subject__groups": {"$neq": {"$i": "v:G"}}}},
        ]
    }


def test_not_is_pushed_down_to_exact_complements():
    """not(any(gt, within)) becomes and(le-or-missing, window false)."""
    _, result = compiled()
    expr = next(iter(result.rulesets.values()))["p0r1"]["all"][0]["m"]
    assert expr == {
        "$and": [
            {
                "$or": [
                    {"$lte": {"subject__attributes__level__n": number_value(3.0)}},
                    {"$nex": {"subject__attributes__level__n": 1}},
                ]
            },
            {"now__w0": "v:false"},
        ]
    }
    assert result.fields == {
        "subject.department",
        "subject.groups",
        "subject.attributes.level",
        "now",
    }


def test_parse_condition_normalises_values():
    """Plain values mean eq; numbers become canonical text; email fields are lower-cased."""
    tree = parse_condition({"subject.domain": "Contoso.COM", "subject.attributes.n": 2.0})
    assert [(c.field, c.op, c.value) for c in tree.items] == [
        ("subject.domain", "eq", "contoso.com"),
        ("subject.attributes.n", "eq", "2"),
    ]
