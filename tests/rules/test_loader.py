"""Loading rule files: every problem is reported as file:line naming the key."""

from __future__ import annotations

import pytest

from policyd.domain import Outcome
from policyd.rules import ProblemsError, load_bundle, load_texts
from tests.conftest import POLICIES, rule_file

VALID = """
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Package
  lifetime: {duration: P1D}
  rules:
    - id: everyone
      then: {decision: auto_approve}
"""


def problems_of(texts: dict[str, str]) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        load_texts({name: rule_file(text) for name, text in texts.items()})
    return [str(p) for p in caught.value.problems]


def test_example_policies_load():
    """The shipped example policies are valid."""
    bundle = load_bundle(POLICIES)
    assert set(bundle.packages) >= {
        "sales-support",
        "merger-collaboration",
        "scope-a-readers",
        "quarter-end-close",
    }


def test_typo_bad_duration_and_bad_cron_are_all_reported_with_lines():
    """One file with three mistakes gives three file:line errors, not just the first."""
    text = """
    apiVersion: policyd/v1
    package:
      id: broken
      displayName: Broken
      rules:
        - id: a
          when: {subject.type: member}
          then:
            decision: auto_approve
            lifetme: {duration: P1D}
        - id: b
          then:
            decision: require_approval
            approval: {stages: [{approvers: [manager], timeout: 3 days}]}
            lifetime: {until: {cron: "61 * * * *"}}
    """
    found = problems_of({"broken.yaml": text})
    assert found == [
        "broken.yaml:10: package.rules[0].then.lifetme: unknown key (check its spelling; "
        "see docs/rules.md)",
        "broken.yaml:14: package.rules[1].then.approval.stages[0].timeout: '3 days' is not an "
        "ISO-8601 duration such as P90D or PT8H",
        "broken.yaml:15: package.rules[1].then.lifetime.until.cron: '61 * * * *' is not a valid "
        "cron expression",
    ]


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ("{subject.grups: {contains: x}}", "unknown field 'subject.grups'"),
        ("{subject.type: {equals: member}}", "unknown operator 'equals' for subject.type"),
        ("{subject.type: robot}", "subject.type is member or guest"),
        ("{subject.attributes.level: {gt: high}}", "gt compares numbers"),
        ("{request.duration: {le: P1M}}", "years and months have no fixed length"),
        ("{now: {within: 'not cron'}}", "is not a valid cron expression"),
        ("{now: {within: {cron: '* * * * *', timezone: Mars/Base}}}", "unknown time zone"),
        ("{now: {within: '* * 31 2 *'}}", "cron '* * 31 2 *' never fires, so the window never"),
        ("{any: []}", "`any` takes a non-empty list"),
        ("{subject.groups: [a, b]}", "give subject.groups an operator"),
        ("{subject.id: {in: []}}", "in takes a non-empty list"),
        ("{subject.id: {exists: yes please}}", "exists takes true or false"),
        ("{subject.packages: {contains: nope}}", "unknown package 'nope'"),
    ],
)
def test_condition_errors_name_the_key(when, message):
    """Each malformed condition is reported on the `when` line with a specific message."""
    text = VALID.replace("    - id: everyone\n", f"    - id: everyone\n      when: {when}\n")
    found = problems_of({"p.yaml": text})
    assert len(found) == 1
    assert found[0].startswith("p.yaml:8: package.rules[0].when")
    assert message in found[0]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("apiVersion: policyd/v1", "apiVersion: policyd/v9", "unknown format version"),
        ("  id: pkg", "  id: Not A Slug", "is not a valid id"),
        ("decision: auto_approve}", "decision: maybe}", "Must be one of"),
        ("{duration: P1D}", "{duration: P1D, endDate: 2027-01-01}", "exactly one of duration"),
        ("{duration: P1D}", "{duration: P2D, max: P1D}", "the duration is longer than max"),
        ("{duration: P1D}", "{duration: -P1D}", "not an ISO-8601 duration"),
        ("{duration: P1D}", "{duration: PT0S}", "longer than zero"),
        ("{duration: P1D}", "{duration: P1D, requested: sometimes}", "Must be one of"),
        ("  lifetime: {duration: P1D}\n", "", "auto_approve needs a lifetime"),
        (
            "{decision: auto_approve}",
            "{decision: auto_approve, approval: {stages: [{approvers: [manager]}]}}",
            "auto_approve takes no approval",
        ),
        ("{decision: auto_approve}", "{decision: require_approval}", "needs approval stages"),
        (
            "{decision: auto_approve}",
            "{decision: deny, lifetime: {duration: P1D}}",
            "deny takes no lifetime",
        ),
        (
            "{decision: auto_approve}",
            "{decision: require_approval, approval: {stages: [{approvers: [boss]}]}}",
            "unknown approver kind 'boss'",
        ),
        (
            "{decision: auto_approve}",
            "{decision: require_approval, approval: {stages: [{approvers: [owners]}]}}",
            "approver 'owners' needs package.owners",
        ),
        (
            "{decision: auto_approve}",
            "{decision: require_approval, approval: {stages: [{approvers: [manager]},"
            " {approvers: [manager]}, {approvers: [manager]}, {approvers: [manager]}]}}",
            "between 1 and 3 approval stages",
        ),
        ("  rules:", "  incompatibleWith: [ghost]\n  rules:", "unknown package 'ghost'"),
        ("  rules:", "  incompatibleWith: [pkg]\n  rules:", "cannot be incompatible with itself"),
        (
            "    - id: everyone\n",
            "    - id: everyone\n      priority: high\n",
            "Not a valid integer",
        ),
    ],
)
def test_package_and_outcome_errors(old, new, message):
    """Schema and reference errors in a package are reported with their message."""
    assert old in VALID
    found = problems_of({"p.yaml": VALID.replace(old, new)})
    assert any(message in line for line in found), found
    assert all(line.startswith("p.yaml:") for line in found)


def test_duplicate_ids_are_errors():
    """Duplicate rule ids in a package and duplicate package ids across files are errors."""
    doubled = VALID + "    - id: everyone\n      then: {decision: deny}\n"
    assert problems_of({"a.yaml": doubled}) == [
        "a.yaml:9: package.rules[1].id: duplicate rule id 'everyone'"
    ]
    broken = doubled.replace("decision: deny", "decision: maybe")
    assert "a.yaml:9: package.rules[1].id: duplicate rule id 'everyone'" in problems_of(
        {"a.yaml": broken}
    )
    found = problems_of({"a.yaml": VALID, "b.yaml": VALID})
    assert found == ["b.yaml:3: package.id: duplicate package id 'pkg' (also in a.yaml)"]


def test_duplicate_yaml_keys_and_syntax_errors_have_lines():
    """A repeated key and broken YAML are reported with their line."""
    assert problems_of({"d.yaml": VALID.replace("  id: pkg\n", "  id: pkg\n  id: other\n")}) == [
        "d.yaml:4: package.id: duplicate key"
    ]
    found = problems_of({"s.yaml": "apiVersion: policyd/v1\npackage: [\n"})
    assert len(found) == 1 and found[0].startswith("s.yaml:3: invalid YAML")


def test_errors_in_several_files_are_all_reported():
    """A bundle with two bad files reports both and loads nothing."""
    found = problems_of(
        {"a.yaml": "apiVersion: policyd/v1\n", "b.yaml": "just text\n", "c.yaml": VALID}
    )
    assert found == [
        "a.yaml:1: package: required key is missing",
        "b.yaml:1: a rule file is a mapping with apiVersion and package",
    ]


def test_empty_bundle_is_an_error(tmp_path):
    """A directory without rule files is rejected."""
    with pytest.raises(ProblemsError) as caught:
        load_bundle(tmp_path)
    assert "no rule files" in str(caught.value)


def test_rule_files_are_never_executed(tmp_path):
    """YAML tags that would construct Python objects are rejected, not run."""
    marker = tmp_path / "ran"
    text = VALID.replace(
        "displayName: Package",
        f"displayName: !!python/object/apply:os.system ['touch {marker}']",
    )
    found = problems_of({"evil.yaml": text})
    assert found and "invalid YAML" in found[0]
    assert not marker.exists()


def test_tests_folder_is_not_read_as_rules(tmp_path):
    """Files under tests/ are policy tests, not rule files."""
    (tmp_path / "p.yaml").write_text(rule_file(VALID))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.yaml").write_text("not: a rule file\n")
    assert list(load_bundle(tmp_path).packages) == ["pkg"]


def test_incompatibility_becomes_a_deny_rule_in_both_packages():
    """incompatibleWith adds a deny rule on both sides, naming the other package."""
    other = VALID.replace("id: pkg", "id: other").replace("Package", "Other")
    first = VALID.replace("  rules:", "  incompatibleWith: [other]\n  rules:")
    bundle = load_texts({"a.yaml": rule_file(first), "b.yaml": rule_file(other)})
    rule = bundle.packages["pkg"].rule("incompatible:other")
    assert rule.outcome is Outcome.DENY and "'Other' (other)" in rule.reason
    assert bundle.packages["other"].rule("incompatible:pkg").synthetic


def test_rules_too_complex_for_the_engine_are_load_errors():
    """A condition past durable_rules' limits is reported at its rule's line, not at run time."""
    alternatives = ", ".join(
        f"{{all: [{{subject.id: a{i}}}, {{subject.department: d{i}}}]}}" for i in range(20)
    )
    text = VALID.replace(
        "    - id: everyone\n", f"    - id: everyone\n      when: {{any: [{alternatives}]}}\n"
    )
    found = problems_of({"p.yaml": text})
    assert len(found) == 1
    assert found[0].startswith("p.yaml:7: condition too complex for the engine")


def test_too_many_fields_for_one_fact_is_a_load_error():
    """A bundle reading more attributes than a durable_rules fact can hold is refused."""
    conditions = ", ".join(f"subject.attributes.a{i}: {{gt: 1}}" for i in range(120))
    text = VALID.replace(
        "    - id: everyone\n", f"    - id: everyone\n      when: {{{conditions}}}\n"
    )
    found = problems_of({"p.yaml": text})
    assert any("durable_rules evaluates at most 200 keys per fact" in line for line in found), found


def test_an_incompatible_group_becomes_a_deny_rule_evaluated_by_the_engine():
    """incompatibleGroups adds a deny rule incompatible-group:<group> that the engine matches
    for members of the group only."""
    from datetime import UTC, datetime

    from policyd.domain import Subject
    from policyd.rules import Policy

    text = VALID.replace("  rules:", "  incompatibleGroups: [Group.PaymentsApprovers]\n  rules:")
    bundle = load_texts({"a.yaml": rule_file(text)})
    rule = bundle.packages["pkg"].rule("incompatible-group:Group.PaymentsApprovers")
    assert rule.synthetic and rule.outcome is Outcome.DENY
    policy = Policy(bundle)
    now = datetime(2026, 1, 5, tzinfo=UTC)
    try:
        member = Subject("m", groups=frozenset({"Group.PaymentsApprovers"}))
        denied = policy.decide("pkg", member, now=now)
        allowed = policy.decide("pkg", Subject("n", groups=frozenset({"Other"})), now=now)
    finally:
        policy.close()
    assert (denied.outcome, denied.rule) == (
        Outcome.DENY,
        "incompatible-group:Group.PaymentsApprovers",
    )
    assert (
        denied.reason
        == "Member of group Group.PaymentsApprovers, which is incompatible with 'Package'"
    )
    assert allowed.outcome is Outcome.AUTO_APPROVE


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ("['group:Payments']", "write the group id without 'group:' ('Payments')"),
        ("['']", "a group id has 1 to 180 characters"),
        (f"[{'g' * 181}]", "a group id has 1 to 180 characters"),
        ("Payments", "Not a valid list."),
    ],
)
def test_bad_incompatible_groups_are_reported_at_their_line(groups, message):
    """A malformed incompatibleGroups entry is a file:line error naming the key."""
    text = VALID.replace("  rules:", f"  incompatibleGroups: {groups}\n  rules:")
    found = problems_of({"p.yaml": text})
    assert any(line.startswith("p.yaml:6: package.incompatibleGroups") for line in found), found
    assert any(message in line for line in found), found


def test_a_package_listed_by_several_others_gets_a_deny_rule_for_each():
    """Declared on the other side only, by two packages: both deny rules, in load order, and
    a package nobody lists keeps its rules as written."""
    texts = {
        f"{pid}.yaml": rule_file(VALID.replace("id: pkg", f"id: {pid}").replace("Package", pid))
        for pid in ("pkg", "lone")
    }
    for pid in ("a-first", "b-second"):
        text = VALID.replace("id: pkg", f"id: {pid}").replace(
            "  rules:", "  incompatibleWith: [pkg]\n  rules:"
        )
        texts[f"{pid}.yaml"] = rule_file(text)
    bundle = load_texts(texts)
    assert [r.id for r in bundle.packages["pkg"].rules] == [
        "everyone",
        "incompatible:a-first",
        "incompatible:b-second",
    ]
    assert [r.id for r in bundle.packages["lone"].rules] == ["everyone"]


def test_a_template_stamps_out_incompatibilities_per_row():
    """incompatibleWith and incompatibleGroups take template parameters like any value."""
    text = """
    apiVersion: policyd/v1
    template:
      id: scopes
      parameters: [scope]
      rows: [{scope: A}, {scope: B}]
      packages:
        - id: "${scope|slug}-readers"
          displayName: "${scope} readers"
          incompatibleWith: ["${scope|slug}-writers"]
          incompatibleGroups: ["Group.${scope}.Approvers"]
          lifetime: {duration: PT8H}
          rules: [{id: everyone, then: {decision: auto_approve}}]
        - id: "${scope|slug}-writers"
          displayName: "${scope} writers"
          lifetime: {duration: PT8H}
          rules: [{id: everyone, then: {decision: auto_approve}}]
    """
    bundle = load_texts({"t.yaml": rule_file(text)})
    assert [r.id for r in bundle.packages["b-readers"].rules] == [
        "everyone",
        "incompatible:b-writers",
        "incompatible-group:Group.B.Approvers",
    ]
    assert [r.id for r in bundle.packages["b-writers"].rules] == [
        "everyone",
        "incompatible:b-readers",
    ]


def lifetime_file(lifetime: str, when: str = "") -> str:
    """A package whose one rule approves with `lifetime` (line 8 holds the lifetime)."""
    return f"""
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Package
  rules:
    - id: everyone{when}
      then:
        decision: auto_approve
        lifetime: {lifetime}
"""


def test_a_lifetime_cron_that_never_fires_is_refused_at_its_line():
    """`until: {cron: "0 0 31 2 *"}` (30 February) is a load error, not a 500 per decision."""
    assert problems_of({"f.yaml": lifetime_file('{until: {cron: "0 0 31 2 *"}}')}) == [
        "f.yaml:9: package.rules[0].then.lifetime.until.cron: cron '0 0 31 2 *' never fires"
    ]


def test_a_lifetime_cron_with_years_between_firings_is_refused():
    """A cron that fires only on 29 February leaves years without an end: refused."""
    (problem,) = problems_of({"f.yaml": lifetime_file('{until: {cron: "0 0 29 2 *"}}')})
    assert problem.startswith("f.yaml:9: package.rules[0].then.lifetime.until.cron: cron ")
    assert "does not fire at least once every 366 days" in problem


@pytest.mark.parametrize(
    ("lifetime", "message"),
    [
        ("{duration: P10675199D}", "'P10675199D': a duration is at most 1000 years"),
        ("{duration: P1001Y}", "'P1001Y': a duration is at most 1000 years"),
        ("{duration: P1D, max: P999999999D}", "a duration is at most 1000 years"),
        ("{endDate: 9999-12-31T23:59:59-05:00}", "is past the year 9999 in UTC"),
    ],
)
def test_lifetimes_beyond_what_a_decision_can_count_are_refused(lifetime, message):
    """Durations over 1000 years and end dates with no UTC form are refused at load, so no
    decision overflows a datetime adding or converting them."""
    (problem,) = problems_of({"f.yaml": lifetime_file(lifetime)})
    assert problem.startswith("f.yaml:9: package.rules[0].then.lifetime")
    assert message in problem


def test_an_approval_timeout_over_a_hundred_years_is_refused():
    """A stage timeout that would overflow the request's due time is refused at its line."""
    text = VALID.replace(
        "then: {decision: auto_approve}",
        "then:\n        decision: require_approval\n        approval:\n"
        "          stages: [{approvers: [manager], timeout: P10675199D}]",
    )
    (problem,) = problems_of({"f.yaml": text})
    assert problem.startswith("f.yaml:11: package.rules[0].then.approval.stages[0].timeout: ")
    assert "at most 1000 years" in problem


@pytest.mark.parametrize(
    "where",
    [
        ('{until: {cron: "R 0 1 * *"}}', ""),
        ("{duration: P1D}", '\n      when: {now: {within: "R 8-17 * * *"}}'),
    ],
)
def test_random_cron_fields_are_refused(where):
    """croniter's R picks a random value at every parse; rules must not change by chance."""
    lifetime, when = where
    (problem,) = problems_of({"f.yaml": lifetime_file(lifetime, when)})
    assert "random cron fields (R) are not allowed" in problem


def test_a_window_that_fires_only_on_leap_days_or_in_one_year_is_valid():
    """Windows need no yearly firing, only some firing from 1970 to 2199."""
    for cron in ("* * 29 2 *", "* * * * * 0 2031"):
        when = f'\n      when: {{now: {{within: "{cron}"}}}}'
        assert load_texts({"f.yaml": rule_file(lifetime_file("{duration: P1D}", when))})


def test_a_permanent_lifetime_loads():
    """`lifetime: {permanent: true}` is a lifetime with no end."""
    bundle = load_texts({"f.yaml": rule_file(lifetime_file("{permanent: true}"))})
    assert bundle.packages["pkg"].rules[0].lifetime.permanent


@pytest.mark.parametrize(
    ("lifetime", "message"),
    [
        (
            "{permanent: true, max: P30D}",
            "lifetime.max: permanent access has no max; give a duration and max instead",
        ),
        ("{permanent: false}", "lifetime.permanent: permanent is true, or left out"),
        (
            "{permanent: true, duration: P1D}",
            "lifetime: give exactly one of duration, endDate, until or permanent: true",
        ),
    ],
)
def test_a_permanent_lifetime_is_only_permanent(lifetime, message):
    """Permanent excludes a max and any other end; `permanent: false` says nothing."""
    (problem,) = problems_of({"f.yaml": lifetime_file(lifetime)})
    assert message in problem
