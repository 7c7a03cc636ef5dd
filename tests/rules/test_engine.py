"""The durable_rules adapter under load: threads, version swaps, memory and session limits."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import durable_rules_engine
import pytest
from hypothesis import given, settings

from policyd.domain import Outcome, RequestOptions, Subject, UserType
from policyd.rules import (
    Engine,
    EngineClosedError,
    Policy,
    PolicyRuntime,
    ProblemsError,
    load_texts,
)
from policyd.rules.compiler import compile_bundle
from policyd.rules.decision import decide
from policyd.rules.engine import MEMO_MAX_FACT, MEMO_SIZE, SESSION, EngineError
from policyd.rules.facts import build_fact
from tests.rules import test_properties as props

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STRESS_DECISIONS = int(os.environ.get("POLICYD_STRESS_DECISIONS", "5000"))
STATM = Path("/proc/self/statm")

MIXED = """
apiVersion: policyd/v1
package:
  id: {package}
  displayName: Mixed
  lifetime: {{duration: P7D, max: P30D, requested: any}}
  rules:
    - id: blocked
      when: {{subject.groups: {{contains: blocked}}}}
      then: {{decision: deny, reason: blocked}}
    - id: engineers
      priority: 10
      when: {{subject.department: Engineering, subject.attributes.level: {{ge: 2}}}}
      then: {{decision: auto_approve, reason: engineer}}
    - id: members
      when: {{subject.type: member, not: {{subject.department: {{in: [Sales, Legal]}}}}}}
      then:
        decision: require_approval
        reason: member
        approval: {{stages: [{{approvers: [manager]}}]}}
    - id: guests-at-night
      when: {{subject.type: guest, now: {{within: "* 0-6 * * *"}}}}
      then: {{decision: deny, reason: night}}
"""
SUBJECTS = [
    Subject("u1", department="Engineering", attributes={"level": 3}),
    Subject("u2", department="Engineering", attributes={"level": "1"}),
    Subject("u3", department="Sales"),
    Subject("u4", type=UserType.GUEST, department="Sales"),
    Subject("u5", groups=frozenset({"blocked"}), department="Engineering", attributes={"level": 9}),
    Subject("u6", type=UserType.GUEST),
    Subject("u7", department="Legal", groups=frozenset({"other"})),
]
MOMENTS = [NOW, NOW.replace(hour=3)]


def mixed_bundle():
    return load_texts({f"{p}.yaml": MIXED.format(package=p) for p in ("pkg-a", "pkg-b")})


def versioned_bundle(tag: str, mixed: int = 0):
    """A bundle whose rule id, reason and lifetime (len(tag) days) depend on `tag`.

    `mixed` adds that many copies of the MIXED package, to give each version some weight.
    """
    days = len(tag)
    text = f"""
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Versioned
  rules:
    - id: rule-{tag.lower()}
      then: {{decision: auto_approve, reason: "version {tag}", lifetime: {{duration: P{days}D}}}}
"""
    texts = {f"m{i}.yaml": MIXED.format(package=f"m{i}") for i in range(mixed)}
    return load_texts({"pkg.yaml": text, **texts})


def cases():
    return [
        (package, subject, moment)
        for package in ("pkg-a", "pkg-b")
        for subject in SUBJECTS
        for moment in MOMENTS
    ]


# With the memo off every decision reaches the C core; with it on, threads share remembered
# matches. Both must hold.
MEMO_SIZES = pytest.mark.parametrize("memo_size", [0, MEMO_SIZE], ids=["core", "memo"])


@pytest.mark.slow
@MEMO_SIZES
def test_four_threads_on_one_policy_lose_and_corrupt_no_decision(memo_size):
    """Four threads deciding on one Policy get exactly the single-threaded decisions, none lost."""
    policy = Policy(mixed_bundle(), memo_size=memo_size)
    work = cases()
    expected = [policy.decide(p, s, now=m) for p, s, m in work]
    assert {d.outcome for d in expected} == set(Outcome)  # the mix covers every outcome
    assert any(d.rule is None for d in expected)  # and the default deny
    problems: list[str] = []
    done = [0] * 4
    start = threading.Barrier(4)

    def worker(index: int) -> None:
        start.wait()
        try:
            for n in range(STRESS_DECISIONS):
                k = (n * 7 + index) % len(work)
                package, subject, moment = work[k]
                decision = policy.decide(package, subject, now=moment)
                if decision != expected[k]:
                    problems.append(f"thread {index}, case {k}: {decision!r}")
                done[index] += 1
        except Exception as err:  # reported below; a thread must not die silently
            problems.append(f"thread {index}: {err!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    policy.close()
    assert problems == []
    assert done == [STRESS_DECISIONS] * 4


def test_an_engine_starts_no_background_threads():
    """Creating an engine and deciding with it leaves the thread count unchanged for a second."""
    before = threading.active_count()
    engine = Engine(compile_bundle(mixed_bundle()))
    policy = Policy(mixed_bundle())
    for package, subject, moment in cases():
        policy.decide(package, subject, now=moment)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert threading.active_count() <= before
        time.sleep(0.05)
    engine.close()
    policy.close()


def _rss_bytes() -> int:
    return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not STATM.exists(), reason="reads resident memory from /proc/self/statm")
def test_memory_stays_flat_across_version_swaps_and_old_engines_close():
    """50 swaps between different bundles grow memory by under 5 MiB and close each old engine."""
    tags = [f"V{i}" for i in range(56)]
    # Four MIXED packages per version: leaking the old engines would grow memory by ~25 MiB.
    bundles = {tag: versioned_bundle(tag, mixed=4) for tag in tags}
    runtime = PolicyRuntime(bundles[tags[0]])

    def swap(tag: str) -> None:
        previous = runtime.active
        engine = previous.engine_for("pkg")
        runtime.activate(bundles[tag])
        assert runtime.decide("pkg", Subject("u1"), now=NOW).reason == f"version {tag}"
        assert previous.closed and engine.closed
        with pytest.raises(EngineClosedError):
            engine.match("pkg", {"pd": 1})

    for tag in tags[1:6]:  # warm-up: allocator pools, caches, first-use imports
        swap(tag)
    gc.collect()
    baseline = _rss_bytes()
    for tag in tags[6:]:
        swap(tag)
    gc.collect()
    growth = _rss_bytes() - baseline
    runtime.close()
    assert growth < 5 * 1024 * 1024, f"resident memory grew by {growth / 1024:.0f} KiB"


@pytest.mark.slow
def test_a_decision_during_a_swap_uses_one_whole_version():
    """Threads deciding while versions swap always get one whole version: rule, reason, lifetime."""
    tags = ("ONE", "TWO", "THREE")
    bundles = [versioned_bundle(tag) for tag in tags]
    expected = {
        b.version.id: (f"rule-{tag.lower()}", f"version {tag}", timedelta(days=len(tag)))
        for b, tag in zip(bundles, tags, strict=True)
    }
    runtime = PolicyRuntime(bundles[0])
    stop = threading.Event()
    problems: list[str] = []
    seen: set[str] = set()
    count = [0]

    def decide_until_stopped() -> None:
        try:
            while not stop.is_set():
                d = runtime.decide("pkg", Subject("u1"), RequestOptions(), now=NOW)
                got = (d.rule, d.reason, d.lifetime.expires_at - NOW)
                if got != expected.get(d.version):
                    problems.append(f"{d.version}: {got!r}")
                seen.add(d.version)
                count[0] += 1
        except Exception as err:
            problems.append(repr(err))

    deciders = [threading.Thread(target=decide_until_stopped) for _ in range(3)]
    for thread in deciders:
        thread.start()
    for swap in range(150):
        runtime.activate(bundles[(swap + 1) % len(bundles)])
        time.sleep(0.001)
    stop.set()
    for thread in deciders:
        thread.join()
    runtime.close()
    assert problems == []
    assert len(seen) >= 2  # the swaps really happened while threads were deciding
    assert count[0] > 150


def test_evaluations_continue_past_the_session_limit():
    """2,000 sequential evaluations, past durable_rules' 1,024 live sessions, all stay correct."""
    policy = Policy(mixed_bundle(), memo_size=0)  # every evaluation reaches the C core
    engineer, sales = SUBJECTS[0], SUBJECTS[2]
    compiled = policy.engine_for("pkg-b").compiled
    for n in range(2000):
        subject = engineer if n % 2 else sales
        decision = policy.decide("pkg-a", subject, now=NOW)
        assert decision.rule == ("engineers" if n % 2 else None)
        fact = build_fact(compiled, subject, RequestOptions(), NOW)
        matched = policy.engine_for("pkg-b").match("pkg-b", fact)
        assert matched == ({"engineers", "members"} if n % 2 else set())
    policy.close()


def test_each_ruleset_keeps_one_session_that_holds_no_fact_between_evaluations():
    """After every evaluation each used ruleset's one session is back to its bare state."""
    policy = Policy(mixed_bundle(), memo_size=0)
    for package, subject, moment in cases():
        policy.decide(package, subject, now=moment)
        engine = policy.engine_for(package)
        for name in engine.compiled.ruleset_of[package]:
            handle = engine._handles[name]
            assert durable_rules_engine.get_facts(handle, SESSION) == "[]"
            state = json.loads(durable_rules_engine.get_state(handle, SESSION))
            assert state == {"sid": SESSION, "id": f"sid-{SESSION}", "$s": 1}
    policy.close()


def test_numbers_durable_rules_cannot_read_as_json_still_compare_by_value():
    """Values such as 1e16 and 1e-05 (no decimal point in their JSON) compare like any number."""
    text = """
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Numbers
  rules:
    - {id: big, when: {subject.attributes.x: {ge: 1e16}}, then: {decision: deny}}
    - {id: tiny, when: {subject.attributes.x: {lt: 1.0e-05}}, then: {decision: deny}}
    - {id: negative, when: {subject.attributes.x: {lt: -1e20}}, then: {decision: deny}}
"""
    policy = Policy(load_texts({"pkg.yaml": text}))
    expected = [
        (1e16, {"big"}),
        (9.99e15, set()),
        (2e300, {"big"}),
        (1e-05, set()),
        (5e-06, {"tiny"}),
        (-0.0, {"tiny"}),
        (-2e20, {"tiny", "negative"}),
        ("1e16", {"big"}),
        ("x", set()),
    ]
    matched = [
        (value, set(policy.decide("pkg", Subject("u", attributes={"x": value}), now=NOW).matched))
        for value, _ in expected
    ]
    policy.close()
    assert matched == expected


def test_rules_true_of_an_empty_fact_do_not_match_the_session_state():
    """`exists: false` and `ne` do not fire on durable_rules' own session-state document."""
    text = """
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Absent
  rules:
    - {id: no-manager, when: {subject.manager: {exists: false}}, then: {decision: deny}}
    - {id: not-sales, when: {subject.department: {ne: Sales}}, then: {decision: deny}}
"""
    policy = Policy(load_texts({"pkg.yaml": text}))
    both = policy.decide("pkg", Subject("u", manager="m", department="Sales"), now=NOW)
    neither = policy.decide("pkg", Subject("u"), now=NOW)
    policy.close()
    assert both.matched == ()
    assert neither.matched == ("no-manager", "not-sales")


def test_fact_keys_that_durable_rules_cannot_tell_apart_are_refused():
    """Two attribute keys with one durable_rules key hash are refused instead of read as one."""
    text = """
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Colliding
  rules:
    - {id: a, when: {subject.attributes.l2Bh: x}, then: {decision: deny}}
    - {id: b, when: {subject.attributes.pCba: {exists: false}}, then: {decision: deny}}
"""
    with pytest.raises(ProblemsError, match=r"l2Bh.*pCba.*collide in durable_rules"):
        load_texts({"pkg.yaml": text})


@settings(max_examples=150, deadline=None)
@given(props.rule_lists(), props.SUBJECTS, props.REQUESTS, props.MOMENTS)
def test_a_remembered_match_decides_exactly_as_a_fresh_one(rules, subject, request, now):
    """The first and the remembered decision equal one made with the memo off, field by field."""
    bundle = load_texts({"pkg.yaml": props.file_text(rules)})
    fresh, memoised = Policy(bundle, memo_size=0), Policy(bundle)
    try:
        expected = fresh.decide("pkg", subject, request, now=now)
        first = memoised.decide("pkg", subject, request, now=now)
        assert memoised.engine_for("pkg").remembered == 1
        again = memoised.decide("pkg", subject, request, now=now)
    finally:
        fresh.close()
        memoised.close()
    assert first == expected and again == expected


@settings(max_examples=150, deadline=None)
@given(props.rule_lists(), props.SUBJECTS, props.REQUESTS, props.MOMENTS)
def test_member_keys_and_ranks_decide_exactly_as_lists_and_walking_the_rules(
    rules, subject, request, now
):
    """Named list values read from their own keys, and matches ordered by precomputed ranks,
    give the decision that searching the list and walking every rule gives, field by field."""
    bundle = load_texts({"pkg.yaml": props.file_text(rules)})
    fast = compile_bundle(bundle)
    plain = dataclasses.replace(compile_bundle(bundle, member_limit=0), ranks={})
    engines = [Engine(fast, memo_size=0), Engine(plain, memo_size=0)]
    try:
        with_keys, with_lists = (decide(bundle, e, "pkg", subject, request, now) for e in engines)
    finally:
        for engine in engines:
            engine.close()
    assert not plain.members and not plain.ranks
    assert with_keys == with_lists


def test_the_memo_keeps_at_most_memo_size_facts():
    """Past `memo_size` distinct facts the oldest are forgotten; every answer stays right."""
    bundle = mixed_bundle()
    small, fresh = Policy(bundle, memo_size=4), Policy(bundle, memo_size=0)
    subjects = [
        Subject(f"u{n}", department="Engineering", attributes={"level": n % 5}) for n in range(20)
    ]
    for subject in subjects * 2:
        decided = small.decide("pkg-a", subject, now=NOW)
        assert decided == fresh.decide("pkg-a", subject, now=NOW)
        assert small.engine_for("pkg-a").remembered <= 4
    assert fresh.engine_for("pkg-a").remembered == 0
    small.close()
    fresh.close()


def test_the_memo_tells_facts_apart_by_their_exact_json():
    """1, 1.0 and true are one key to a dict but three facts to durable_rules: never confused."""
    text = """
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Types
  rules:
    - {id: one, when: {subject.attributes.x: {eq: 1}}, then: {decision: deny}}
    - {id: truth, when: {subject.attributes.x: {eq: "true"}}, then: {decision: deny}}
"""
    bundle = load_texts({"pkg.yaml": text})
    memoised, fresh = Policy(bundle), Policy(bundle, memo_size=0)
    for value in (1, 1.0, True, "1", "true", 1, True):
        subject = Subject("u", attributes={"x": value})
        assert memoised.decide("pkg", subject, now=NOW) == fresh.decide("pkg", subject, now=NOW)
    memoised.close()
    fresh.close()


def test_a_version_swap_forgets_what_the_old_version_remembered():
    """After a swap the old engine remembers nothing and refuses even a fact it had remembered."""
    runtime = PolicyRuntime(versioned_bundle("ONE"))
    assert runtime.decide("pkg", Subject("u1"), now=NOW).reason == "version ONE"
    old = runtime.active.engine_for("pkg")
    assert old.remembered == 1
    runtime.activate(versioned_bundle("TWO"))
    assert old.remembered == 0
    fact = build_fact(old.compiled, Subject("u1"), RequestOptions(), NOW)
    with pytest.raises(EngineClosedError):
        old.match("pkg", fact)
    assert runtime.decide("pkg", Subject("u1"), now=NOW).reason == "version TWO"
    runtime.close()


def test_a_fact_too_long_to_remember_is_still_matched():
    """A subject with a very long attribute is decided right and not remembered (memory bound)."""
    long_text = "x" * (MEMO_MAX_FACT + 1)
    subject = Subject("u", groups=frozenset({"blocked"}), attributes={"level": long_text})
    policy = Policy(mixed_bundle())
    fact = build_fact(policy.engine_for("pkg-a").compiled, subject, RequestOptions(), NOW)
    assert len(str(fact)) > MEMO_MAX_FACT
    assert policy.decide("pkg-a", subject, now=NOW).rule == "blocked"
    assert policy.engine_for("pkg-a").remembered == 0
    policy.close()


def test_a_broken_engine_refuses_facts_it_remembers():
    """Once the engine failed, it answers nothing, not even from its memo."""
    policy = Policy(mixed_bundle())
    policy.decide("pkg-a", SUBJECTS[0], now=NOW)
    # What a failed assert_fact leaves behind:
    policy.engine_for("pkg-a")._broken = "simulated failure"
    with pytest.raises(EngineError):
        policy.decide("pkg-a", SUBJECTS[0], now=NOW)
    policy.close()
