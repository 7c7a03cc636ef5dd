"""Opening a review campaign: an item per live assignment, its reviewers, its recommendation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import update

from policyd.rules.review import Advisor, find_scope
from policyd.services.review_opening import (
    build_items,
    load_directory,
    reviewers_for,
    reviewers_now,
    subject_of,
)
from policyd.store.models import User
from tests.review_support import NOW, STALE, reviewed_in, reviewed_package


@pytest.fixture
def grant(session, runtime, deliver):
    return reviewed_in(session, runtime, deliver, reviewed_package(extra=STALE))


@pytest.fixture
def crm(runtime):
    """The crm package's quarterly review, and what it covers."""
    return find_scope(runtime.active.bundle, "crm", "quarterly")


def leave(session, *users: str) -> None:
    session.execute(update(User).where(User.id.in_(users)).values(state="disabled"))


def test_each_holder_gets_an_item_with_reviewers_and_a_recommendation(session, runtime, grant, crm):
    """pat (stale) is recommended for removal and reviewed by his manager; quinn has no
    manager, so the review's fallback (the owner olivia) reviews, with no recommendation."""
    assignments = grant("crm", "pat", "quinn")
    advisor = Advisor(runtime.active.bundle)
    try:
        items, reviewers = build_items(session, "c-1", crm, assignments, advisor, now=NOW)
    finally:
        advisor.close()
    pat, quinn = items
    assert (pat["subject_id"], pat["campaign_id"], pat["assignment_id"]) == (
        "pat",
        "c-1",
        assignments[0].id,
    )
    assert (pat["recommendation"], pat["recommendation_rule"]) == (
        "remove",
        "no-sign-in-for-90-days",
    )
    assert (quinn["recommendation"], quinn["recommendation_rule"]) == (None, None)
    by_item = {row["item_id"]: row["user_id"] for row in reviewers}
    assert (by_item[pat["id"]], by_item[quinn["id"]]) == ("max", "olivia")


def test_no_holders_open_no_items(session, runtime, grant, crm):
    advisor = Advisor(runtime.active.bundle)
    try:
        assert build_items(session, "c-1", crm, [], advisor, now=NOW) == ([], [])
    finally:
        advisor.close()


def test_reviewer_references_resolve_without_the_holder_or_leavers(session, grant, crm):
    """`self` is the holder; a group never puts the holder on their own item; someone who
    left reviews nothing; repeats drop."""
    owners = crm.owners
    grant("crm", "pat")
    directory = load_directory(session, ["pat"])
    holder = directory.users["pat"]
    refs = ["self", "manager", "owners", "user:olivia"]
    assert reviewers_for(session, refs, "pat", holder, owners, directory) == [
        "pat",
        "max",
        "olivia",
    ]
    assert reviewers_for(session, ["user:pat", "manager"], "pat", holder, owners, directory) == [
        "max"
    ]
    leave(session, "max")
    directory = load_directory(session, ["pat"])
    assert reviewers_for(session, ["manager"], "pat", holder, owners, directory) == []


def test_items_whose_reviewers_left_resolve_to_the_fallback_now(session, grant, crm):
    """max has left: pat's item is reviewed by the fallback, olivia."""
    grant("crm", "pat")
    leave(session, "max")
    item = SimpleNamespace(id="i-1", subject_id="pat")
    assert reviewers_now(session, crm, [item]) == [{"item_id": "i-1", "user_id": "olivia"}]


def test_the_reviewed_subject_carries_sign_in_age_and_sponsor(session, grant):
    """pat: 126 days since sign-in; gil the guest: his sponsor sid has not left, then has."""
    grant("crm", "pat", "gil")
    directory = load_directory(session, ["gil", "pat"])
    pat = subject_of(directory.users["pat"], directory, NOW)
    assert pat.attributes["daysSinceSignIn"] == 126
    assert "sponsorLeft" not in pat.attributes
    gil = subject_of(directory.users["gil"], directory, NOW)
    assert (gil.type, gil.attributes["sponsorLeft"]) == ("guest", "false")
    leave(session, "sid")
    directory = load_directory(session, ["gil"])
    assert subject_of(directory.users["gil"], directory, NOW).attributes["sponsorLeft"] == "true"
