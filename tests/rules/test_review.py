"""Access reviews in rule files: validation with file:line, schedules, recommendations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policyd.domain import Subject, UserType
from policyd.rules import ProblemsError, load_texts
from policyd.rules.model import NoResponse, Verdict
from policyd.rules.review import Advisor, last_start, review_subject
from tests.review_support import STALE, reviewed_package

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def problems(text: str) -> list[str]:
    with pytest.raises(ProblemsError) as refused:
        load_texts({"crm.yaml": text})
    return [str(problem) for problem in refused.value.problems]


def test_a_review_loads_with_its_defaults_and_reminders_latest_first():
    review = load_texts({"crm.yaml": reviewed_package()}).packages["crm"].reviews[0]
    assert (review.id, review.duration, review.reviewers) == (
        "quarterly",
        timedelta(days=14),
        ("manager",),
    )
    assert review.reminders == (timedelta(days=7), timedelta(days=1))
    assert review.on_no_response is NoResponse.REMOVE and not review.self_review


def test_an_unknown_reviewer_kind_is_refused_with_file_and_line():
    found = problems(reviewed_package(reviewers="[boss]"))
    assert found == [
        "crm.yaml:16: package.reviews[0].reviewers[0]: unknown reviewer kind 'boss'; "
        "use one of: self, manager, owners, user:<id>, group:<id>"
    ]


def test_owners_as_reviewers_need_package_owners():
    text = reviewed_package().replace('  owners: ["user:olivia"]\n', "")
    assert any("reviewer 'owners' needs package.owners" in p for p in problems(text))


def test_recommendation_as_the_default_needs_recommendations():
    found = problems(reviewed_package(on_no_response="recommendation"))
    assert any("onNoResponse: recommendation needs recommendations" in p for p in found)


def test_a_reminder_must_fall_within_the_campaign():
    text = reviewed_package().replace("reminders: [P7D, P1D]", "reminders: [P20D]")
    assert any("a reminder comes before the end" in p for p in problems(text))


def test_campaigns_that_would_overlap_are_refused():
    text = reviewed_package().replace("duration: P14D", "duration: P100D")
    assert any("campaigns would overlap" in p for p in problems(text))


def test_a_bad_schedule_is_refused():
    text = reviewed_package().replace('"0 0 1 1,4,7,10 *"', '"every quarter"')
    assert any("is not a valid cron expression" in p for p in problems(text))


def test_duplicate_recommendation_ids_are_refused():
    twice = STALE.replace("guest-whose-sponsor-left", "no-sign-in-for-90-days")
    found = problems(reviewed_package(on_no_response="recommendation", extra=twice))
    assert any("duplicate id(s): no-sign-in-for-90-days" in p for p in found)


def test_the_last_start_is_the_latest_fire_time_at_or_before_now():
    review = load_texts({"crm.yaml": reviewed_package()}).packages["crm"].reviews[0]
    assert last_start(review, NOW) == datetime(2026, 1, 1, tzinfo=UTC)
    assert last_start(review, datetime(2026, 4, 1, tzinfo=UTC)) == datetime(2026, 4, 1, tzinfo=UTC)


def test_days_since_sign_in_and_sponsor_left_are_derived():
    subject = Subject("gus", type=UserType.GUEST, attributes={"lastSignIn": "2025-10-01T00:00:00Z"})
    derived = review_subject(subject, NOW, sponsor_left=True).attributes
    assert (derived["daysSinceSignIn"], derived["sponsorLeft"]) == (96, "true")
    assert "daysSinceSignIn" not in review_subject(Subject("x"), NOW).attributes


def test_a_matched_remove_wins_over_a_matched_keep():
    keep_first = STALE.replace(
        "      recommendations:\n",
        "      recommendations:\n        - {id: everyone-keeps, when: {subject.type: guest}, "
        "recommend: keep}\n",
    )
    text = reviewed_package(on_no_response="recommendation", extra=keep_first)
    advisor = Advisor(load_texts({"crm.yaml": text}))
    guest = Subject("gus", type=UserType.GUEST, attributes={"sponsorLeft": "false"})
    gone = review_subject(guest, NOW, sponsor_left=True)
    try:
        kept = advisor.recommend("crm", "quarterly", review_subject(guest, NOW), NOW)
        removed = advisor.recommend("crm", "quarterly", gone, NOW)
    finally:
        advisor.close()
    assert (kept.id, kept.verdict) == ("everyone-keeps", Verdict.KEEP)
    assert (removed.id, removed.verdict) == ("guest-whose-sponsor-left", Verdict.REMOVE)


def test_a_changed_review_is_a_change_in_the_semantic_diff():
    """policyd diff shows a review's new default as a change of the package's reviews."""
    from policyd.rules.diff import diff_bundles

    old = load_texts({"crm.yaml": reviewed_package()})
    new = load_texts({"crm.yaml": reviewed_package(on_no_response="keep")})
    (change,) = diff_bundles(old, new).packages
    (field,) = change.fields
    assert field.field == "reviews"
    assert (field.before[0]["onNoResponse"], field.after[0].get("onNoResponse")) == ("remove", None)


def test_a_review_in_a_template_reviews_every_package_it_makes():
    """Packages reviewed alike: the template's review is in each generated package, with
    the row's values substituted."""
    template = """\
apiVersion: policyd/v1
template:
  id: scope-readers
  parameters: [scope]
  rows: [{scope: ScopeB}, {scope: ScopeC}]
  packages:
    - id: "${scope|slug}-readers"
      displayName: "${scope} readers"
      owners: ["group:Group.${scope}.Owners"]
      lifetime: {permanent: true}
      rules:
        - {id: anyone, then: {decision: auto_approve}}
      reviews:
        - id: quarterly
          schedule: "0 0 1 1,4,7,10 *"
          duration: P14D
          reviewers: ["group:Group.${scope}.Owners"]
"""
    bundle = load_texts({"scopes.yaml": template})
    reviewers = {pid: p.reviews[0].reviewers for pid, p in bundle.packages.items()}
    assert reviewers == {
        "scopeb-readers": ("group:Group.ScopeB.Owners",),
        "scopec-readers": ("group:Group.ScopeC.Owners",),
    }


def test_the_packed_form_of_a_version_keeps_its_reviews():
    """A stored version loaded from its packed form has the same reviews as from its files."""
    from policyd.rules.packed import pack_bundle, unpack_bundle

    text = reviewed_package(on_no_response="recommendation", extra=STALE)
    bundle = load_texts({"crm.yaml": text})
    unpacked = unpack_bundle(pack_bundle(bundle))
    assert unpacked.packages["crm"].reviews == bundle.packages["crm"].reviews
