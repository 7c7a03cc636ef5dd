"""durable_rules' 64-entry match stack (error 303) against the compiler's splitting.

The C core walks its alpha network depth first with a fixed stack (events.c `handleAlpha`):
popping a node pushes every child that matches. So the stack holds, at its peak, the matching
siblings still waiting along one path plus the children of the node on top. The first tests
pin what the C core really counts; the rest try to make a rule file the loader accepts overflow
it, and check the room each compiled ruleset leaves on the stack.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import durable_rules_engine
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyd.domain import RequestOptions, Subject
from policyd.rules import Policy, ProblemsError, load_texts
from policyd.rules.compiler import ALPHA_BUDGET, ALWAYS_ACTION, MARKER, _size, compile_bundle
from policyd.rules.engine import Engine
from policyd.rules.facts import build_fact
from tests.rules.oracle import oracle_matched

STACK = 64  # MAX_STACK_SIZE in events.c
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ALWAYS = {ALWAYS_ACTION: {"all": [{"m": {"$ex": {MARKER: 1}}}]}}
_names = itertools.count()


def assert_code(rules: dict[str, Any], fact: dict[str, Any]) -> int | str:
    """Assert `fact` into a fresh ruleset of `rules`: 0 when handled, else the error text."""
    handle = durable_rules_engine.create_ruleset(f"stack{next(_names)}", json.dumps(rules))
    try:
        code, _ = durable_rules_engine.assert_fact(handle, json.dumps({**fact, "sid": "1"}))
        return code
    except Exception as err:  # the C core raises its error code as text
        return str(err)
    finally:
        durable_rules_engine.delete_ruleset(handle)


def fillers(count: int) -> dict[str, Any]:
    """`count` always-true rules on the marker key, each its own alpha node.

    The marker is the fact's first key, so these nodes are pushed first and wait at the bottom
    of the stack while the other rules' nodes are walked: they measure the room left."""
    return {f"fill{n}": {"all": [{"m": {"$gte": {MARKER: -1 - n}}}]} for n in range(count)}


def peak(rules: dict[str, Any], fact: dict[str, Any]) -> int:
    """The deepest the stack goes for `fact`: 64 less the fillers that still fit beneath."""
    room = next(n for n in range(STACK + 1) if assert_code({**rules, **fillers(n)}, fact) != 0)
    return STACK - room + 1


def keys(count: int) -> dict[str, int]:
    return {MARKER: 1, **{f"k{n}": 1 for n in range(count)}}


def one_of(*tests: int) -> dict[str, Any]:
    return {"$or": [{f"k{n}": 1} for n in tests]}


def ruleset(expressions: list[dict[str, Any]]) -> dict[str, Any]:
    rules = {f"r{n}": {"all": [{"m": expr}]} for n, expr in enumerate(expressions)}
    return {**ALWAYS, **rules}


def test_single_tests_fill_the_stack_one_entry_each():
    """63 matching single-test rules plus the always-rule fit; 64 raise error 303."""
    assert assert_code(ruleset([{f"k{n}": 1} for n in range(63)]), keys(64)) == 0
    assert "303" in str(assert_code(ruleset([{f"k{n}": 1} for n in range(64)]), keys(64)))


def test_each_true_branch_of_an_or_takes_an_entry():
    """21 rules of a 3-way $or fit (63 + 1 entries); 22 raise error 303."""
    fits = [one_of(3 * n, 3 * n + 1, 3 * n + 2) for n in range(21)]
    assert assert_code(ruleset(fits), keys(66)) == 0
    too_many = [one_of(3 * n, 3 * n + 1, 3 * n + 2) for n in range(22)]
    assert "303" in str(assert_code(ruleset(too_many), keys(66)))


def test_an_and_holds_only_its_first_test_on_the_stack_beside_other_rules():
    """22 rules $and[a, $or(b, c, d)] (88 tests) fit: the $or waits behind one rule's a."""
    rules = [
        {"$and": [{f"k{n}": 1}, one_of(22 + 3 * n, 23 + 3 * n, 24 + 3 * n)]} for n in range(22)
    ]
    assert assert_code(ruleset(rules), keys(88)) == 0
    assert peak(ruleset(rules), keys(88)) == 23 + 2


def test_an_and_of_ors_takes_its_first_branches_plus_one_path_not_the_product():
    """$and[$or(3), $or(3)] has 9 branches but takes 3 entries beside other rules and 2 more
    on its deepest path; four such $ors take 3 + 3 * 2. Never more than its tests."""
    two = [{"$and": [one_of(0, 1, 2), one_of(3, 4, 5)]}]
    assert peak(ruleset(two), keys(6)) == 1 + 3 + 2
    five = [
        {"$and": [one_of(6 * n, 6 * n + 1, 6 * n + 2), one_of(*range(6 * n + 3, 6 * n + 6))]}
        for n in range(5)
    ]
    assert peak(ruleset(five), keys(30)) == 1 + 5 * 3 + 2
    four = [{"$and": [one_of(*range(3 * m, 3 * m + 3)) for m in range(4)]}]
    assert peak(ruleset(four), keys(12)) == 1 + 3 + 3 * 2


def test_equality_choices_on_one_key_take_one_entry():
    """A fact key has one value, so only one branch of an `in` list matches at a time."""
    rules = [{"$or": [{f"k{n}": value} for value in (1, 2, 3)]} for n in range(5)]
    assert peak(ruleset(rules), keys(5)) == 1 + 5


ATTRIBUTES = [f"subject.attributes.a{n}" for n in range(8)]
MATCH_ALL = Subject(
    "u",
    department="D",
    groups=frozenset({"g0", "g1", "g2"}),
    attributes={f"a{n}": "x" for n in range(8)},
)


def rule_text(whens: list[dict[str, Any]]) -> dict[str, str]:
    rules = [
        {"id": f"r{n}", "when": when, "then": {"decision": "deny"}} for n, when in enumerate(whens)
    ]
    package = {"id": "adv", "displayName": "Adversarial", "rules": rules}
    return {"adv.yaml": yaml.safe_dump({"apiVersion": "policyd/v1", "package": package})}


def attr(n: int) -> str:
    return ATTRIBUTES[n % len(ATTRIBUTES)]


ADVERSARIAL = {
    "and of two 3-way ors": lambda n: {
        "all": [
            {"any": [{attr(n + k): "x"} for k in range(3)]},
            {"any": [{attr(n + 3 + k): "x"} for k in range(3)]},
        ]
    },
    "and of three 3-way ors": lambda n: {
        "all": [{"any": [{attr(n + 3 * j + k): "x"} for k in range(3)]} for j in range(3)]
    },
    "in lists": lambda n: {attr(n): {"in": ["x", "y", "z"]}, attr(n + 1): {"in": ["x", "q"]}},
    "not_in and ne": lambda n: {
        attr(n): {"not_in": [f"n{n}", "m"]},
        "subject.department": {"ne": f"X{n}"},
    },
    "contains_any twice": lambda n: {
        "all": [
            {"subject.groups": {"contains_any": ["g0", "g1", "g2"]}},
            {"subject.groups": {"contains_any": ["g2", "g1", f"h{n}"]}},
        ]
    },
    "branches sharing a prefix": lambda n: {
        "any": [
            {attr(n): "x"},
            {"all": [{attr(n): "x"}, {"subject.department": "D"}]},
            {attr(n): "x"},
        ]
    },
    "negated all": lambda n: {"not": {"all": [{attr(n + k): "nope"} for k in range(4)]}},
}


@pytest.mark.parametrize("shape", sorted(ADVERSARIAL))
def test_rules_built_to_overflow_the_stack_still_decide(shape):
    """100 rules of each adversarial shape, all matching one subject, decide without error 303
    and each compiled ruleset leaves room for as many entries as it has tests to spare."""
    bundle = load_texts(rule_text([ADVERSARIAL[shape](n) for n in range(100)]))
    policy = Policy(bundle, memo_size=0)
    try:
        decision = policy.decide("adv", MATCH_ALL, now=NOW)
    finally:
        policy.close()
    assert set(decision.matched) == oracle_matched(
        bundle.package("adv"), MATCH_ALL, RequestOptions(), NOW
    )
    assert len(decision.matched) == 100
    assert_room_left(bundle, MATCH_ALL)


def assert_room_left(bundle, subject: Subject) -> None:
    """Each ruleset, topped up with fillers to STACK entries counted as tests, still decides."""
    compiled = compile_bundle(bundle)
    padded = {}
    for name, rules in compiled.rulesets.items():
        tests = sum(_size(rule["all"][0]["m"])[0] for rule in rules.values())
        assert tests <= ALPHA_BUDGET
        padded[name] = {**rules, **fillers(STACK - tests)}
    rule_of = {**compiled.rule_of, **{name: ("", "filler") for name in fillers(STACK)}}
    engine = Engine(replace(compiled, rulesets=padded, rule_of=rule_of), memo_size=0)
    try:
        for package_id in compiled.ruleset_of:
            engine.match(package_id, build_fact(compiled, subject, RequestOptions(), NOW))
    finally:
        engine.close()


FIELDS = [*ATTRIBUTES[:4], "subject.department"]
LEAVES = st.one_of(
    st.builds(lambda f, v: {f: v}, st.sampled_from(FIELDS), st.sampled_from(["x", "D", "y"])),
    st.builds(
        lambda f, v: {f: {"in": v}},
        st.sampled_from(FIELDS),
        st.lists(st.sampled_from(["x", "D", "y", "z"]), min_size=1, max_size=4),
    ),
    st.builds(lambda f, v: {f: {"ne": v}}, st.sampled_from(FIELDS), st.sampled_from(["x", "y"])),
    st.builds(
        lambda v: {"subject.groups": {"contains_any": v}},
        st.lists(st.sampled_from(["g0", "g1", "g2", "g3"]), min_size=1, max_size=3),
    ),
)
TREES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"not": item}, inner),
    ),
    max_leaves=8,
)
SUBJECTS = st.builds(
    lambda values, department, groups: Subject(
        "u",
        department=department,
        groups=frozenset(groups),
        attributes={f"a{n}": v for n, v in enumerate(values) if v is not None},
    ),
    st.lists(st.sampled_from(["x", "y", "z", None]), min_size=4, max_size=4),
    st.sampled_from(["D", "x", None]),
    st.frozensets(st.sampled_from(["g0", "g1", "g2", "g3"])),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    whens=st.lists(TREES, min_size=20, max_size=60),
    subjects=st.lists(SUBJECTS, min_size=3, max_size=3),
)
def test_random_and_or_trees_never_overflow_and_agree_with_the_oracle(whens, subjects):
    """Any accepted bundle of random and/or/not trees decides as the oracle says, and every
    ruleset keeps STACK - tests entries free (checked with fillers against the C core)."""
    try:
        bundle = load_texts(rule_text(whens))
    except ProblemsError as err:
        assert "too complex for the engine" in str(err)
        return
    policy = Policy(bundle, memo_size=0)
    try:
        for subject in subjects:
            decision = policy.decide("adv", subject, now=NOW)
            expected = oracle_matched(bundle.package("adv"), subject, RequestOptions(), NOW)
            assert set(decision.matched) == expected
    finally:
        policy.close()
    for subject in subjects:
        assert_room_left(bundle, subject)
