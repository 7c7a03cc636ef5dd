"""Decision semantics (docs/rules.md "How a decision is made"), one behaviour per test."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from policyd.domain import Outcome, RequestOptions, Subject, UserType
from policyd.rules import (
    NO_RULE_MATCHED,
    InvalidInputError,
    Policy,
    UnknownPackageError,
    load_texts,
)
from policyd.rules.decision import LIFETIME_UNRESOLVED
from policyd.rules.model import LifetimePolicy
from policyd.rules.timing import Window
from tests.conftest import policy_from, rule_file


def package(rules: str, extra: str = "") -> str:
    return f"""
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Package
  owners: ["user:olivia", "group:Owners"]
  lifetime: {{duration: PT8H}}
{extra}  rules:
{rules}"""


@pytest.fixture
def decide(clock):
    opened = []

    def run(rules: str, subject: Subject, request: RequestOptions | None = None, **kw):
        policy = policy_from(package(rules, kw.pop("extra", "")))
        opened.append(policy)
        return policy.decide("pkg", subject, request, now=kw.pop("now", clock()))

    yield run
    for policy in opened:
        policy.close()


APPROVE_HIGH = """
    - id: approve-high
      priority: 100
      then: {decision: auto_approve}
"""
DENY_LOW = """
    - id: deny-low
      priority: -5
      when: {subject.type: guest}
      then: {decision: deny, reason: no guests}
"""


def test_a_matched_deny_wins_over_a_higher_priority_approval(decide):
    """Any matched deny decides, whatever the priorities."""
    decision = decide(APPROVE_HIGH + DENY_LOW, Subject("g", type=UserType.GUEST))
    assert decision.outcome is Outcome.DENY
    assert decision.rule == "deny-low"
    assert decision.matched == ("approve-high", "deny-low")
    assert decision.reason == "no guests"
    assert decision.lifetime is None


def test_highest_priority_decides_among_approvals(decide):
    """Without a deny the matched rule with the highest priority decides."""
    rules = """
    - id: low
      then: {decision: auto_approve}
    - id: high
      priority: 5
      then:
        decision: require_approval
        approval: {stages: [{approvers: [manager]}]}
"""
    decision = decide(rules, Subject("u"))
    assert (decision.outcome, decision.rule) == (Outcome.REQUIRE_APPROVAL, "high")


def test_equal_priority_goes_to_the_rule_written_first(decide):
    """At equal priority the first rule in the file decides."""
    rules = """
    - id: first
      then: {decision: require_approval, approval: {stages: [{approvers: [owners]}]}}
    - id: second
      then: {decision: auto_approve}
"""
    assert decide(rules, Subject("u")).rule == "first"


def test_no_match_is_a_default_deny(decide):
    """When no rule matches the answer is deny, reason "no rule matched", no rule."""
    decision = decide(DENY_LOW, Subject("m"))
    assert decision.outcome is Outcome.DENY
    assert decision.reason == NO_RULE_MATCHED == "no rule matched"
    assert decision.rule is None and decision.matched == ()


def test_decision_carries_version_lifetime_and_resolved_stages(decide, clock):
    """A decision names the version, a concrete expiry and the resolved approvers."""
    rules = """
    - id: staged
      then:
        decision: require_approval
        approval:
          requireJustification: true
          stages:
            - {approvers: [manager, owners], timeout: P2D, escalateTo: ["group:Helpdesk"]}
            - {approvers: [sponsors, "group:Security"]}
"""
    decision = decide(rules, Subject("u", manager="max"))
    assert len(decision.version) == 12
    assert decision.lifetime.expires_at == clock() + timedelta(hours=8)
    first, second = decision.stages
    assert first.resolved == ("user:max", "user:olivia", "group:Owners")
    assert first.timeout == timedelta(days=2) and first.escalate_to == ("group:Helpdesk",)
    assert second.resolved == ("sponsors", "group:Security")
    assert second.timeout == timedelta(days=14)  # the default stage timeout
    assert decision.justification_required


def test_a_manager_approver_without_a_manager_resolves_to_nobody(decide):
    """`manager` with no manager known resolves to no approver (the service escalates)."""
    rules = """
    - id: staged
      then: {decision: require_approval, approval: {stages: [{approvers: [manager]}]}}
"""
    assert decide(rules, Subject("u")).stages[0].resolved == ()


@pytest.mark.parametrize(
    ("when", "subject", "holds"),
    [
        ("{subject.department: {ne: Sales}}", Subject("u"), True),
        ("{subject.department: {eq: Sales}}", Subject("u"), False),
        ("{subject.department: {not_in: [Sales]}}", Subject("u"), True),
        ("{subject.attributes.level: {lt: 3}}", Subject("u"), False),
        ("{not: {subject.attributes.level: {gt: 3}}}", Subject("u"), True),
        ("{subject.attributes.level: {lt: 3}}", Subject("u", attributes={"level": "2"}), True),
        ("{subject.attributes.level: {lt: 3}}", Subject("u", attributes={"level": "two"}), False),
        ("{subject.attributes.level: 2}", Subject("u", attributes={"level": 2.0}), True),
        ("{subject.attributes.flag: true}", Subject("u", attributes={"flag": True}), True),
        ("{subject.attributes.flag: true}", Subject("u", attributes={"flag": 1}), False),
        ("{subject.attributes.code: '007'}", Subject("u", attributes={"code": 7}), False),
        ("{subject.domain: Contoso.COM}", Subject("u", email="A@contoso.com"), True),
        ("{subject.email: a@contoso.com}", Subject("u", email="A@Contoso.com"), True),
        ("{subject.domain: {exists: false}}", Subject("u", email="not-an-email"), True),
        ("{subject.groups: {not_contains: x}}", Subject("u"), True),
        ("{subject.groups: {contains: x}}", Subject("u", groups=frozenset({"x"})), True),
        ("{subject.groups: {contains_any: [y, x]}}", Subject("u", groups=frozenset("x")), True),
        ("{subject.groups: {contains_any: [y, z]}}", Subject("u", groups=frozenset("x")), False),
        ("{subject.type: member}", Subject("u"), True),
        ("{any: [{subject.id: a}, {subject.id: u}]}", Subject("u"), True),
        ("{all: [{subject.id: u}, {not: {subject.id: u}}]}", Subject("u"), False),
    ],
)
def test_condition_semantics(decide, when, subject, holds):
    """Each documented condition semantic holds in the engine."""
    rules = f"""
    - id: r
      when: {when}
      then: {{decision: auto_approve}}
"""
    assert (decide(rules, subject).rule == "r") is holds


def test_request_conditions(decide):
    """Requested duration and justification are visible to conditions."""
    rules = """
    - id: short-and-justified
      when:
        request.duration: {le: PT4H}
        request.justification: {exists: true}
      then: {decision: auto_approve}
"""
    subject = Subject("u")
    assert decide(rules, subject, RequestOptions("PT2H", "ticket 1")).rule == "short-and-justified"
    assert decide(rules, subject, RequestOptions("PT5H", "ticket 1")).rule is None
    assert decide(rules, subject, RequestOptions("PT2H", "   ")).rule is None
    assert decide(rules, subject, RequestOptions(None, "ticket 1")).rule is None


def test_time_window_condition(decide):
    """`now: {within: cron}` holds only inside the window, in the given time zone."""
    rules = """
    - id: office-hours
      when: {now: {within: {cron: "* 9-16 * * 1-5", timezone: Europe/Berlin}}}
      then: {decision: auto_approve}
"""
    monday_10_berlin = datetime.fromisoformat("2026-01-05T09:00:00+00:00")
    monday_18_berlin = datetime.fromisoformat("2026-01-05T17:00:00+00:00")
    saturday = datetime.fromisoformat("2026-01-10T10:00:00+00:00")
    assert decide(rules, Subject("u"), now=monday_10_berlin).rule == "office-hours"
    assert decide(rules, Subject("u"), now=monday_18_berlin).rule is None
    assert decide(rules, Subject("u"), now=saturday).rule is None


def test_bad_inputs_name_the_field(decide):
    """A naive `now` or a malformed requested duration is rejected naming the field."""
    with pytest.raises(InvalidInputError) as caught:
        decide(APPROVE_HIGH, Subject("u"), now=datetime(2026, 1, 1))
    assert caught.value.field == "now"
    with pytest.raises(InvalidInputError) as caught:
        decide(APPROVE_HIGH, Subject("u"), RequestOptions(duration="8 hours"))
    assert caught.value.field == "request.duration"


def test_unknown_package_is_a_lookup_error(clock):
    """Asking for a package the bundle lacks raises UnknownPackageError."""
    policy = policy_from(package(APPROVE_HIGH))
    try:
        with pytest.raises(UnknownPackageError):
            policy.decide("other", Subject("u"), now=clock())
    finally:
        policy.close()


def test_a_permanent_lifetime_decides_with_no_expiry(decide):
    """An approval with `permanent: true` has lifetime.expires_at null in its answer."""
    rules = "    - {id: r, then: {decision: auto_approve, lifetime: {permanent: true}}}\n"
    decision = decide(rules, Subject("u"))
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert decision.to_dict()["lifetime"] == {
        "expires_at": None,
        "explanation": "permanent: no end date",
        "clamped": False,
        "extendable": False,
    }


def test_an_approval_whose_end_date_has_passed_is_a_deny_naming_the_rule(decide, clock):
    """Access that would end before it starts is not granted: the answer is a deny from the
    rule, saying why, never an error."""
    rules = "    - {id: r, then: {decision: auto_approve, lifetime: {endDate: 2025-12-31}}}\n"
    decision = decide(rules, Subject("u"))
    assert (decision.outcome, decision.rule, decision.matched) == (Outcome.DENY, "r", ("r",))
    assert decision.reason == (
        f"{LIFETIME_UNRESOLVED}: the fixed end date 2025-12-31T00:00:00Z has passed"
    )
    assert decision.lifetime is None and decision.stages == ()


def test_a_published_cron_lifetime_that_stopped_firing_is_a_deny_not_an_error(clock):
    """Even a stored bundle whose cron no longer fires (made here past the loader's checks)
    answers every decision with a deny that names the cron."""
    bundle = load_texts({"f.yaml": rule_file(package(APPROVE_HIGH))})
    stale = LifetimePolicy(until=Window("0 0 1 1 * 0 2025"))
    pkg = bundle.packages["pkg"]
    pkg = dataclasses.replace(pkg, lifetime=stale)
    bundle = dataclasses.replace(bundle, packages={"pkg": pkg})
    policy = Policy(bundle)
    try:
        decision = policy.decide("pkg", Subject("u", department="Engineering"), now=clock())
    finally:
        policy.close()
    assert decision.outcome is Outcome.DENY
    assert decision.reason.startswith(f"{LIFETIME_UNRESOLVED}: cron '0 0 1 1 * 0 2025' (UTC)")


@pytest.mark.parametrize(
    "now",
    [
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        datetime(2200, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, tzinfo=UTC),
    ],
)
def test_a_decision_time_outside_1970_to_2199_is_invalid_input(decide, now):
    """A `now` where cron windows or lifetimes cannot be counted is refused, naming `now`."""
    with pytest.raises(InvalidInputError) as caught:
        decide(APPROVE_HIGH, Subject("u"), now=now)
    assert caught.value.field == "now"
    assert "is not between 1970 and 2199" in caught.value.message


def test_the_latest_decision_time_resolves_windows_and_lifetimes_in_any_zone(decide):
    """At the last allowed minute, a cron window in UTC+14 and the longest lifetime still
    resolve without overflow."""
    rules = (
        "    - id: r\n"
        '      when: {now: {within: {cron: "* * * * *", timezone: Pacific/Kiritimati}}}\n'
        "      then: {decision: auto_approve, lifetime: {duration: P1000Y}}\n"
    )
    now = datetime(2199, 12, 31, 23, 59, tzinfo=UTC)
    decision = decide(rules, Subject("u"), now=now)
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert decision.lifetime.expires_at == datetime(3199, 12, 31, 23, 59, tzinfo=UTC)


REQUIRE_TEAM = """
    - id: team
      when: {subject.department: Sales}
      then: {decision: require_approval, approval: {stages: [{approvers: [manager, owners]}]}}
"""


@pytest.mark.parametrize(
    "rules, subject",
    [
        (APPROVE_HIGH + DENY_LOW, Subject("u", type=UserType.GUEST)),  # a deny
        (APPROVE_HIGH, Subject("u")),  # an approval with its lifetime
        (REQUIRE_TEAM, Subject("u", department="Sales", manager="m")),  # stages
        (REQUIRE_TEAM, Subject("u")),  # no rule matched
        ("    - {id: r, then: {decision: auto_approve, lifetime: {endDate: 2025-12-31}}}\n", None),
    ],
    ids=["deny", "approve", "stages", "no-match", "lifetime-deny"],
)
def test_decisions_are_made_with_every_field_equal_to_the_dataclass_s_own(decide, rules, subject):
    """decide() builds Decisions without their __init__: each has every field, and equals the
    Decision built from the same values."""
    decision = decide(rules, subject or Subject("u"))
    values = vars(decision)
    assert set(values) == {field.name for field in dataclasses.fields(decision)}
    rebuilt = type(decision)(**values)
    assert (
        rebuilt == decision and hash(rebuilt) == hash(decision) and repr(rebuilt) == repr(decision)
    )
