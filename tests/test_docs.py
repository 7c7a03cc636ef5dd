"""Every YAML example in docs/rules.md loads, and its policy tests pass."""

from __future__ import annotations

import re

import pytest
import yaml

from policyd.domain import RequestOptions, Subject
from policyd.rules import InvalidInputError, Policy, load_texts
from policyd.rules.policytest import CaseFileSchema, run_cases
from tests.conftest import ROOT

BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def examples() -> list[str]:
    return BLOCK.findall((ROOT / "docs" / "rules.md").read_text(encoding="utf-8"))


def is_rule_file(block: str) -> bool:
    return re.search(r"^(package|catalogs):", block, re.MULTILINE) is not None


def test_docs_have_examples_of_rules_and_tests():
    """The format page shows rule files and a test file."""
    blocks = examples()
    assert sum(is_rule_file(b) for b in blocks) >= 5
    assert sum(b.startswith("apiVersion: policyd/v1\ntests:") for b in blocks) == 1


def test_every_rule_example_loads_as_one_bundle():
    """All rule-file examples load together (they reference each other)."""
    rule_blocks = [b for b in examples() if is_rule_file(b)]
    bundle = load_texts({f"example{i}.yaml": text for i, text in enumerate(rule_blocks)})
    assert "conditions-tour" in bundle.packages
    assert bundle.packages["payments-creation"].rule("incompatible:payments-approval")


def test_the_documented_policy_tests_pass():
    """The test-file example runs green against the documented packages."""
    blocks = examples()
    bundle = load_texts({f"e{i}.yaml": b for i, b in enumerate(blocks) if is_rule_file(b)})
    test_block = next(b for b in blocks if "\ntests:" in b)
    cases = CaseFileSchema().load(yaml.safe_load(test_block))["tests"]
    policy = Policy(bundle)
    try:
        results = run_cases(policy, cases)
    finally:
        policy.close()
    assert [r.failures for r in results] == [[]] * 7


def test_the_documented_incompatible_group_denies_its_members():
    """payments-approval's incompatibleGroups example denies a member of Payments.Clerks."""
    from datetime import UTC, datetime

    from policyd.domain import Subject

    bundle = load_texts({f"e{i}.yaml": b for i, b in enumerate(examples()) if is_rule_file(b)})
    policy = Policy(bundle)
    clerk = Subject("c", department="Finance", groups=frozenset({"Payments.Clerks"}))
    try:
        decision = policy.decide("payments-approval", clerk, now=datetime(2026, 1, 5, tzinfo=UTC))
    finally:
        policy.close()
    assert decision.rule == "incompatible-group:Payments.Clerks"


def test_the_documented_template_makes_two_packages_per_row():
    """The template example in docs/rules.md loads into a readers and an eligibility package
    for each of its rows, each naming the template."""
    block = next(b for b in examples() if b.startswith("apiVersion: policyd/v1\ntemplate:"))
    bundle = load_texts({"scopes.yaml": block})
    assert sorted(bundle.packages) == [
        "scopeb-eligibility",
        "scopeb-readers",
        "scopec-eligibility",
        "scopec-readers",
    ]
    assert {p.template for p in bundle.packages.values()} == {"scope-readers"}


def test_the_documented_questions_refuse_a_missing_required_answer():
    """incident-access in docs/rules.md requires a ticket: leaving it out names answers.ticket."""
    from datetime import UTC, datetime

    import pytest

    from policyd.domain import RequestOptions, Subject
    from policyd.rules import InvalidInputError

    bundle = load_texts({f"e{i}.yaml": b for i, b in enumerate(examples()) if is_rule_file(b)})
    assert bundle.package("incident-access").question("ticket").text_for("fr") == (
        "Ticket d'incident"
    )
    policy = Policy(bundle)
    try:
        with pytest.raises(InvalidInputError) as caught:
            policy.decide(
                "incident-access",
                Subject("ada"),
                RequestOptions(answers={"severity": "sev1"}),
                now=datetime(2026, 1, 5, tzinfo=UTC),
            )
    finally:
        policy.close()
    assert caught.value.field == "answers.ticket"


def test_the_documented_catalog_and_managers_load():
    """The catalog example declares engineering with its owners; build-agents joins it and
    names its manager."""
    bundle = load_texts({f"e{i}.yaml": b for i, b in enumerate(examples()) if is_rule_file(b)})
    engineering = bundle.catalogs["engineering"]
    assert engineering.owners == ("group:Engineering.CatalogOwners", "user:grace")
    agents = bundle.packages["build-agents"]
    assert (agents.catalog, agents.managers) == ("engineering", ("user:hank",))


def test_the_rule_question_example_asks_only_those_it_applies_to(clock):
    """deal-room in docs/rules.md: someone in Sales must name the deal and is approved on it;
    anyone else is asked nothing and goes to the owner."""
    (text,) = [b for b in examples() if "id: deal-room" in b]
    policy = Policy(load_texts({"deal-room.yaml": text}))
    try:
        sales = Subject(id="sam", department="Sales")
        with pytest.raises(InvalidInputError) as refused:
            policy.decide("deal-room", sales, RequestOptions(answers={}), now=clock())
        assert refused.value.field == "answers.deal"
        answered = RequestOptions(answers={"deal": "ACME-2027"})
        assert policy.decide("deal-room", sales, answered, now=clock()).rule == "sales-with-a-deal"
        other = policy.decide(
            "deal-room", Subject(id="bob"), RequestOptions(answers={}), now=clock()
        )
        assert other.rule == "others-ask-the-owner"
    finally:
        policy.close()


def test_the_documented_reviews_of_a_package_and_of_a_catalog_load():
    """reviews-tour's quarterly review keeps every documented key; the engineering catalog's
    yearly review covers build-agents and scope-b-readers, which have none of their own."""
    from datetime import timedelta

    from policyd.rules.review import review_scopes

    bundle = load_texts({f"e{i}.yaml": b for i, b in enumerate(examples()) if is_rule_file(b)})
    (quarterly,) = bundle.packages["reviews-tour"].reviews
    assert (quarterly.id, quarterly.duration) == ("quarterly", timedelta(days=14))
    assert (quarterly.reviewers, quarterly.fallback) == (("manager",), ("owners",))
    assert quarterly.reminders == (timedelta(days=7), timedelta(days=1))
    assert quarterly.on_no_response == "recommendation"
    assert [r.id for r in quarterly.recommendations] == [
        "no-sign-in-for-90-days",
        "guest-whose-sponsor-left",
    ]
    scopes = {scope.id: scope for scope in review_scopes(bundle)}
    engineering = scopes["catalog:engineering"]
    assert engineering.review.id == "yearly"
    assert engineering.packages == ("build-agents", "scope-b-readers")
    assert engineering.owners == ("group:Engineering.CatalogOwners", "user:grace")
