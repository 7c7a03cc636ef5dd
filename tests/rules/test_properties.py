"""Property tests of the decision semantics (docs/rules.md "How a decision is made", lifetimes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policyd.domain import Outcome, RequestOptions, Subject, UserType
from policyd.rules import NO_RULE_MATCHED, Policy, ProblemsError, choose, load_texts
from policyd.rules.lifetime import (
    LifetimeError,
    lifetime_cron_problem,
    next_fire,
    resolve_lifetime,
)
from policyd.rules.model import LifetimePolicy, RequestedDuration, Rule
from policyd.rules.timing import Window, parse_duration, parse_window
from tests.rules.oracle import oracle_matched

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MOMENTS = st.sampled_from(
    [NOW, datetime(2026, 1, 31, 23, 59, tzinfo=UTC), datetime(2026, 2, 28, 12, 0, tzinfo=UTC)]
)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)

CONDITIONS = [
    None,  # no `when`: always matches
    {"subject.department": "Sales"},
    {"subject.department": {"ne": "Sales"}},
    {"subject.groups": {"contains": "a"}},
    {"subject.groups": {"contains_any": ["a", "b"]}},
    {"subject.attributes.level": {"gt": 2}},
    {"not": {"subject.attributes.level": {"gt": 2}}},
    {"any": [{"subject.type": "guest"}, {"subject.groups": "b"}]},
    {"request.justification": {"exists": True}},
    {"subject.department": "Sales", "subject.groups": {"not_contains": "c"}},
]
OUTCOMES = st.sampled_from([o.value for o in Outcome])
SUBJECTS = st.builds(
    Subject,
    id=st.just("u1"),
    type=st.sampled_from(list(UserType)),
    department=st.sampled_from([None, "Sales", "Engineering"]),
    groups=st.frozensets(st.sampled_from(["a", "b", "c"])),
    manager=st.sampled_from([None, "m1"]),
    attributes=st.dictionaries(st.just("level"), st.sampled_from([1, 2, 3, "x", None])),
)
REQUESTS = st.builds(
    RequestOptions,
    duration=st.sampled_from([None, "PT1H", "P3D", "P10D", "P1M", "P1Y"]),
    justification=st.sampled_from([None, " ", "ticket 42"]),
)


def rule_dict(number: int, condition: dict | None, outcome: str, priority: int) -> dict:
    then: dict = {"decision": outcome, "reason": f"rule r{number}"}
    if outcome == "require_approval":
        then["approval"] = {"stages": [{"approvers": ["manager"]}]}
    rule: dict = {"id": f"r{number}", "priority": priority, "then": then}
    if condition is not None:
        rule["when"] = condition
    return rule


def file_text(rules: list[dict], lifetime: dict | None = None) -> str:
    package = {
        "id": "pkg",
        "displayName": "Package",
        "lifetime": lifetime or {"duration": "P7D", "max": "P30D", "requested": "any"},
        "rules": rules,
    }
    return yaml.safe_dump({"apiVersion": "policyd/v1", "package": package})


@st.composite
def rule_lists(draw, distinct_priorities: bool = False, conditions=CONDITIONS) -> list[dict]:
    count = draw(st.integers(1, 6))
    if distinct_priorities:
        priorities = draw(
            st.lists(st.integers(-5, 20), min_size=count, max_size=count, unique=True)
        )
    else:
        priorities = draw(st.lists(st.sampled_from([0, 1, 5]), min_size=count, max_size=count))
    return [
        rule_dict(number, draw(st.sampled_from(conditions)), draw(OUTCOMES), priorities[number])
        for number in range(count)
    ]


def decide_once(text: str, subject: Subject, request: RequestOptions, now: datetime):
    bundle = load_texts({"pkg.yaml": text})
    policy = Policy(bundle)
    try:
        return bundle, policy.decide("pkg", subject, request, now=now)
    finally:
        policy.close()


@PROPERTY_SETTINGS
@given(rule_lists(), SUBJECTS, REQUESTS, MOMENTS)
def test_any_matched_deny_wins(rules, subject, request, now):
    """Whenever a deny rule matched, the decision is a deny decided by a matched deny rule."""
    bundle, decision = decide_once(file_text(rules), subject, request, now)
    package = bundle.package("pkg")
    denies = {r.id for r in package.rules if r.id in decision.matched and r.outcome is Outcome.DENY}
    if denies:
        assert decision.outcome is Outcome.DENY
        assert decision.rule in denies
        assert decision.lifetime is None


@PROPERTY_SETTINGS
@given(rule_lists(conditions=CONDITIONS[1:]), SUBJECTS, REQUESTS, MOMENTS)
def test_no_match_is_a_default_deny(rules, subject, request, now):
    """When no rule holds, the decision is deny, with no rule, no lifetime and 'no rule matched'."""
    bundle, decision = decide_once(file_text(rules), subject, request, now)
    if not oracle_matched(bundle.package("pkg"), subject, request, now):
        assert decision.outcome is Outcome.DENY
        assert decision.rule is None
        assert decision.matched == ()
        assert decision.reason == NO_RULE_MATCHED
        assert decision.lifetime is None and decision.stages == ()
    else:
        assert decision.rule is not None


DURATIONS = st.builds(timedelta, days=st.integers(0, 400), hours=st.integers(0, 23)).filter(
    lambda d: d > timedelta(0)
)
REQUESTED = st.one_of(
    st.none(),
    st.integers(1, 500).map(lambda n: f"P{n}D"),
    st.integers(1, 48).map(lambda n: f"PT{n}H"),
    st.integers(1, 30).map(lambda n: f"P{n}M"),
    st.integers(1, 3).map(lambda n: f"P{n}Y"),
)


@st.composite
def lifetime_policies(draw) -> LifetimePolicy:
    end = draw(st.sampled_from(["duration", "end_date", "until"]))
    fields: dict = {
        "maximum": draw(DURATIONS),
        "requested": draw(st.sampled_from(list(RequestedDuration))),
    }
    if end == "duration":
        fields["duration"] = draw(DURATIONS)
    elif end == "end_date":
        fields["end_date"] = NOW + draw(DURATIONS)
    else:
        fields["until"] = Window(draw(st.sampled_from(["0 0 1 1,4,7,10 *", "0 18 * * 5"])))
    return LifetimePolicy(**fields)


@settings(max_examples=500, deadline=None)
@given(lifetime_policies(), REQUESTED, MOMENTS)
def test_resolved_lifetime_never_exceeds_the_maximum(policy, requested, now):
    """Whatever the default and the request, access never ends later than now + max (or is
    refused because its end date has passed)."""
    if policy.end_date is not None and policy.end_date <= now:
        with pytest.raises(LifetimeError):
            resolve_lifetime(policy, now, requested)
        return
    assert resolve_lifetime(policy, now, requested).expires_at <= now + policy.maximum


@settings(max_examples=500, deadline=None)
@given(lifetime_policies(), REQUESTED, MOMENTS, DURATIONS)
def test_lifetime_counted_from_a_later_grant_keeps_its_terms(policy, requested, now, wait):
    """Granted at the decision, access ends when the decision said; granted `wait` later,
    it ends no later than the grant plus the maximum, never after a fixed end, and lasts
    as long as it would have when no fixed end binds it."""
    assume(policy.end_date is None or policy.end_date > now)  # else refused at the decision
    lifetime = resolve_lifetime(policy, now, requested)
    assert lifetime.ends(now) == lifetime.expires_at
    later = now + wait
    ends = lifetime.ends(later)
    assert ends <= later + policy.maximum
    if lifetime.not_after is not None:
        assert ends <= lifetime.not_after
    else:
        assert ends - later == lifetime.expires_at - now


@PROPERTY_SETTINGS
@given(
    st.sampled_from(["PT8H", "P7D", "P1M"]),
    st.sampled_from(["P7D", "P30D", "P2M"]),
    st.sampled_from(["none", "shorter", "any"]),
    REQUESTS,
    MOMENTS,
)
def test_decided_lifetime_never_exceeds_the_maximum(duration, maximum, requested, request, now):
    """An approval's decided expiry is never later than now + the package's max."""
    lifetime = {"duration": duration, "max": maximum, "requested": requested}
    text = file_text([rule_dict(0, None, "auto_approve", 0)], lifetime)
    try:
        _, decision = decide_once(text, Subject("u1"), request, now)
    except ProblemsError as err:  # a default longer than max is refused when loading
        assert "longer than max" in str(err)
        return
    assert decision.lifetime is not None
    assert decision.lifetime.expires_at <= now + parse_duration(maximum)


@PROPERTY_SETTINGS
@given(rule_lists(), SUBJECTS, REQUESTS, MOMENTS)
def test_the_same_input_gives_the_same_decision(rules, subject, request, now):
    """Deciding twice, or with a second Policy of the same bundle, gives the same decision."""
    bundle = load_texts({"pkg.yaml": file_text(rules)})
    first, second = Policy(bundle), Policy(bundle)
    try:
        once = first.decide("pkg", subject, request, now=now)
        assert first.decide("pkg", subject, request, now=now) == once
        assert second.decide("pkg", subject, request, now=now) == once
    finally:
        first.close()
        second.close()


@PROPERTY_SETTINGS
@given(st.data(), rule_lists(distinct_priorities=True), SUBJECTS, REQUESTS, MOMENTS)
def test_rule_order_does_not_matter_when_priorities_differ(data, rules, subject, request, now):
    """With distinct priorities, reordering the rules in the file leaves the decision unchanged."""
    shuffled = data.draw(st.permutations(rules))
    _, before = decide_once(file_text(rules), subject, request, now)
    _, after = decide_once(file_text(shuffled), subject, request, now)
    assert (after.outcome, after.rule, after.reason) == (before.outcome, before.rule, before.reason)
    assert set(after.matched) == set(before.matched)
    assert after.lifetime == before.lifetime
    assert after.stages == before.stages


RULES = st.lists(
    st.tuples(st.sampled_from(list(Outcome)), st.integers(-3, 3)), min_size=0, max_size=8
).map(
    lambda specs: [
        Rule(id=f"r{i}", outcome=outcome, priority=priority)
        for i, (outcome, priority) in enumerate(specs)
    ]
)


@settings(max_examples=500)
@given(st.data(), RULES)
def test_choose_picks_deny_then_priority_then_file_order(data, rules):
    """choose gives None without a match, else a matched deny first, top priority, first written."""
    ids = [rule.id for rule in rules]
    matched = data.draw(st.sets(st.sampled_from([*ids, "unknown"]))) if ids else set()
    winner = choose(rules, matched)
    hits = [rule for rule in rules if rule.id in matched]
    if not hits:
        assert winner is None
        return
    assert winner in hits
    denies = [r for r in hits if r.outcome is Outcome.DENY]
    group = denies or hits
    assert winner in group
    assert winner.priority == max(r.priority for r in group)
    assert winner is next(r for r in group if r.priority == winner.priority)


@settings(max_examples=200)
@given(st.data(), RULES)
def test_choose_ignores_the_order_of_matched_ids(data, rules):
    """choose depends on the set of matched ids, not on the order they are given in."""
    ids = [rule.id for rule in rules]
    matched = data.draw(st.lists(st.sampled_from(ids), unique=True)) if ids else []
    assert choose(rules, matched) is choose(rules, list(reversed(matched)))


CRON_FIELDS = [
    ["*", "0", "30", "*/15", "0-59/7", "5,10", "59"],
    ["*", "0", "23", "*/6", "8-17", "2", "1,13"],
    ["*", "1", "15", "28", "29", "30", "31", "L", "15W", "?", "1-7", "*/10"],
    ["*", "1", "2", "2,3", "JAN", "FEB", "1,4,7,10", "*/3", "12", "4,6,9,11"],
    ["*", "0", "1-5", "MON", "5#5", "5#1", "L", "SUN-SAT", "6,0", "?", "7"],
]
CRONS = st.tuples(*(st.sampled_from(options) for options in CRON_FIELDS)).map(" ".join)
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Pacific/Kiritimati"])
DECISION_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2199, 12, 31, 23, 59)
).map(lambda moment: moment.replace(tzinfo=UTC))


@settings(max_examples=300, deadline=None)
@given(CRONS, ZONES, DECISION_TIMES)
def test_a_cron_the_loader_accepts_never_fails_a_decision(cron, zone, now):
    """Any cron accepted as a window is evaluated at any decision time without error; any
    accepted as a lifetime ends within 366 days of it."""
    try:
        window = parse_window({"cron": cron, "timezone": zone})
    except ValueError:
        return
    window.contains(now.replace(second=0, microsecond=0))
    if lifetime_cron_problem(window) is None:
        end = next_fire(cron, zone, now)
        assert now < end <= now + timedelta(days=366)
