"""Compilation of conditions into durable_rules JSON."""

from __future__ import annotations

from policyd.rules.compiler import (
    ALWAYS_ACTION,
    MAX_FACT_KEYS,
    MEMBER_LIMIT,
    _member_keys,
    _size,
    compile_bundle,
    number_value,
)
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


def compiled(member_limit: int = 0):
    bundle = load_texts({"p.yaml": TEXT})
    return bundle, compile_bundle(bundle, member_limit=member_limit)


def test_one_ruleset_per_package_named_with_the_version():
    """A small package compiles to one ruleset, package@version#0, with an always-true rule."""
    bundle, result = compiled()
    name = f"pkg@{bundle.version.id}#0"
    assert result.ruleset_of == {"pkg": (name,)}
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


def test_a_list_value_few_rules_name_is_read_from_its_own_key():
    """With few named values, not_contains G is "no key for G" (plus the marker guard)."""
    _, result = compiled(member_limit=MEMBER_LIMIT)
    assert result.members == {"subject.groups": {"G": "subject__groups__m0"}}
    expr = next(iter(result.rulesets.values()))["p0r0"]["all"][0]["m"]
    assert expr["$and"][-1] == {"$nex": {"subject__groups__m0": 1}}


def test_a_list_field_rules_name_many_values_of_is_searched_as_a_list():
    """Past member_limit named values the rules search the fact's list with $iany."""
    rules = "\n".join(
        f"            - {{id: r{n}, when: {{subject.groups: G{n}}}, then: {{decision: deny}}}}"
        for n in range(MEMBER_LIMIT + 1)
    )
    text = rule_file(
        f"""
        apiVersion: policyd/v1
        package:
          id: pkg
          displayName: Many groups
          rules:
{rules}
        """
    )
    result = compile_bundle(load_texts({"p.yaml": text}))
    assert result.members == {}
    first = result.rulesets[result.ruleset_of["pkg"][0]]["p0r0"]["all"][0]["m"]
    assert first == {"$iany": {"subject__groups": {"$i": "v:G0"}}}


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


def big_package(rules: int, when: str) -> str:
    lines = [
        f"    - {{id: r{i}, when: {when.format(i=i)}, then: {{decision: deny}}}}"
        for i in range(rules)
    ]
    return (
        rule_file("apiVersion: policyd/v1\npackage:\n  id: big\n  displayName: Big\n  rules:\n")
        + "\n".join(lines)
        + "\n"
    )


def test_large_packages_are_split_over_rulesets_and_still_match_every_rule(clock):
    """300 rules that all match a subject are spread over rulesets within the engine's
    64-node match stack, and every one of them is reported."""
    from policyd.domain import Subject
    from policyd.rules import Policy

    bundle = load_texts({"big.yaml": big_package(300, "{{subject.department: {{ne: X{i}}}}}")})
    result = compile_bundle(bundle)
    assert len(result.ruleset_of["big"]) > 1
    for ruleset in result.rulesets.values():
        assert sum(_size(rule["all"][0]["m"])[0] for rule in ruleset.values()) < 64
    policy = Policy(bundle)
    try:
        decision = policy.decide("big", Subject("u", department="Sales"), now=clock())
    finally:
        policy.close()
    assert len(decision.matched) == 300


def test_nested_groups_of_one_kind_are_flattened():
    """any(any(a, b), c) compiles to one $or of three tests."""
    tree = parse_condition(
        {"any": [{"any": [{"subject.id": "a"}, {"subject.id": "b"}]}, {"subject.id": "c"}]}
    )
    from policyd.rules.compiler import _Compiler

    assert _Compiler({}, {}).expr(tree, False) == {
        "$or": [{"subject__id": "v:a"}, {"subject__id": "v:b"}, {"subject__id": "v:c"}]
    }


def test_member_keys_skip_names_whose_hash_is_taken_and_respect_the_key_limit():
    """A member key never shares a hash with another key; past MAX_FACT_KEYS the list stays."""
    named = {"subject.groups": {"a", "b"}}
    taken = ["pd", "subject__groups__m0"]  # the first name the compiler would pick
    assert _member_keys(named, taken, MEMBER_LIMIT) == {
        "subject.groups": {"a": "subject__groups__m1", "b": "subject__groups__m2"}
    }
    crowded = [f"k{n}" for n in range(MAX_FACT_KEYS - 1)]
    assert _member_keys(named, crowded, MEMBER_LIMIT) == {}
