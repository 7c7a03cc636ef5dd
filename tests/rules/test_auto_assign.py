"""Auto-assignment in rule files: validation with file:line, the packed form, engine matching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import isodate
import pytest

from policyd.domain import Subject, UserType
from policyd.rules import ProblemsError, load_texts
from policyd.rules.auto_assign import AutoAssigner, changed_packages, fingerprints
from policyd.rules.packed import pack_bundle, unpack_bundle
from tests.conftest import rule_file

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def package(pid: str = "crm", auto: str = "when: {subject.department: Sales}") -> str:
    body = "\n".join(f"            {line}" for line in auto.splitlines())
    return rule_file(
        f"""
        apiVersion: policyd/v1
        package:
          id: {pid}
          displayName: {pid}
          rules:
            - {{id: anyone, then: {{decision: auto_approve, lifetime: {{duration: P1D}}}}}}
          autoAssign:
{body}
        """
    )


def problems(text: str) -> list[str]:
    with pytest.raises(ProblemsError) as refused:
        load_texts({"crm.yaml": text})
    return [str(problem) for problem in refused.value.problems]


def test_an_auto_assignment_rule_loads_with_its_grace_period():
    auto = load_texts({"crm.yaml": package(auto="when: {subject.department: Sales}\ngrace: P7D")})
    policy = auto.packages["crm"].auto_assign
    assert policy is not None and policy.grace == timedelta(days=7)
    assert load_texts({"crm.yaml": package()}).packages["crm"].auto_assign.grace is None


@pytest.mark.parametrize(
    ("when", "why"),
    [
        ("{subject.packages: {contains: other}}", "held packages change with auto-assignment"),
        ("{request.justification: {exists: true}}", "an auto-assignment has no request"),
        ('{now: {within: "* 8-17 * * *"}}', "it is evaluated when the directory changes"),
        ("{not: {answers.ticket: {exists: true}}}", "nobody answers questions"),
    ],
)
def test_a_condition_reading_what_auto_assignment_cannot_know_is_refused(when: str, why: str):
    (found,) = problems(package(auto=f"when: {when}"))
    assert found.startswith("crm.yaml:8: package.autoAssign.when: ")
    assert "an auto-assignment condition may not read it" in found and why in found


def test_mistakes_are_reported_at_their_file_and_line():
    found = problems(package(auto="grace: soon\nwhen: {subject.departmnt: Sales}\nextra: 1"))
    assert found == [
        "crm.yaml:8: package.autoAssign.grace: 'soon' is not an ISO-8601 duration such as "
        "P90D or PT8H",
        "crm.yaml:9: package.autoAssign.when: unknown field 'subject.departmnt'; see "
        "docs/rules.md for the fields",
        "crm.yaml:10: package.autoAssign.extra: unknown key (check its spelling; see "
        "docs/rules.md)",
    ]
    (missing,) = problems(package(auto="grace: P1D"))
    assert missing.startswith("crm.yaml:7: package.autoAssign.when: ")


def test_the_packed_form_keeps_the_rule_and_a_grace_period_in_months():
    bundle = load_texts(
        {"crm.yaml": package(auto="when: {subject.groups: {contains: Sales}}\ngrace: P1M")}
    )
    unpacked = unpack_bundle(pack_bundle(bundle)).packages["crm"].auto_assign
    assert unpacked == bundle.packages["crm"].auto_assign
    assert unpacked.grace == isodate.Duration(months=1)


def test_the_engine_tells_which_packages_a_subject_matches():
    bundle = load_texts(
        {
            "crm.yaml": package(),
            "wiki.yaml": package("wiki", "when: {subject.type: member}"),
            "vpn.yaml": package(
                "vpn",
                "when:\n  any:\n    - {subject.groups: {contains: Remote}}\n"
                "    - {subject.attributes.level: {ge: 3}}",
            ),
            "plain.yaml": package("plain").split("  autoAssign:")[0],
        }
    )
    with AutoAssigner(bundle) as assigner:
        sales = Subject("sam", department="Sales", attributes={"level": 4})
        guest = Subject("gil", type=UserType.GUEST, groups=frozenset({"Remote"}))
        assert assigner.matches(sales, NOW) == {"crm", "wiki", "vpn"}
        assert assigner.matches(guest, NOW) == {"vpn"}
        assert assigner.matches(Subject("x", type=UserType.GUEST), NOW) == frozenset()
        assert set(assigner.policies) == {"crm", "wiki", "vpn"}


def test_a_bundle_without_auto_assignment_matches_nothing():
    bundle = load_texts({"crm.yaml": package().split("  autoAssign:")[0]})
    with AutoAssigner(bundle) as assigner:
        assert assigner.matches(Subject("sam", department="Sales"), NOW) == frozenset()
    assert fingerprints(bundle) == {}


def test_fingerprints_change_only_for_the_packages_whose_rule_changed():
    before = load_texts({"crm.yaml": package(), "wiki.yaml": package("wiki")})
    after = load_texts(
        {
            "crm.yaml": package(auto="when: {subject.department: Sales}\ngrace: P1D"),
            "wiki.yaml": package("wiki"),
        }
    )
    assert changed_packages(fingerprints(before), fingerprints(after)) == ["crm"]
    assert changed_packages(fingerprints(before), {}) == ["crm", "wiki"]
