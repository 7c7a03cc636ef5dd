"""A catalog's review: one campaign over the catalog's packages that have no review of their
own, reviewed by the catalog's owners, applied when it closes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from policyd.services.actor import Actor, Role
from policyd.services.review_campaigns import ReviewCampaigns
from policyd.services.reviews import ReviewService
from policyd.store.models import Assignment, ReviewCampaign, ReviewItem, ReviewReviewer
from tests.conftest import rule_file
from tests.review_support import ENDS, NOW, reviewed_in, reviewed_package

CATALOG = rule_file(
    """
    apiVersion: policyd/v1
    catalogs:
      - id: sales
        displayName: Sales
        owners: ["user:sid"]
        reviews:
          - id: quarterly
            schedule: {cron: "0 0 1 1,4,7,10 *"}
            duration: P14D
            reviewers: [owners]
            onNoResponse: remove
    """
)


def in_sales(text: str) -> str:
    return text.replace("  owners:", "  catalog: sales\n  owners:", 1)


def plain_package(pid: str) -> str:
    return rule_file(
        f"""
        apiVersion: policyd/v1
        package:
          id: {pid}
          displayName: {pid}
          catalog: sales
          lifetime: {{permanent: true}}
          resources:
            - {{connector: directory, resource: "group:{pid}", role: member}}
          rules:
            - id: anyone
              then: {{decision: auto_approve}}
        """
    )


@pytest.fixture
def grant(session, runtime, deliver):
    """crm (its own review, which wins), wiki and leads (none: the catalog's) in sales."""
    return reviewed_in(
        session,
        runtime,
        deliver,
        CATALOG,
        in_sales(reviewed_package("crm")),
        plain_package("wiki"),
        plain_package("leads"),
    )


@pytest.fixture
def opened(session, runtime, grant) -> dict[tuple[str, str], ReviewItem]:
    grant("crm", "pat")
    grant("wiki", "pat", "sue")
    grant("leads", "quinn")
    assert ReviewCampaigns(session, runtime).open_due(now=NOW) == 2
    items = session.scalars(select(ReviewItem))
    return {(item.package, item.subject_id): item for item in items}


def test_one_campaign_covers_the_catalog_s_packages_without_their_own_review(session, opened):
    """The catalog's campaign holds wiki and leads; crm keeps its own campaign."""
    campaigns = {c.package: c for c in session.scalars(select(ReviewCampaign))}
    assert sorted(campaigns) == ["catalog:sales", "crm"]
    by_campaign = {
        package: sorted((i.package, i.subject_id) for i in opened.values() if i.campaign_id == c.id)
        for package, c in campaigns.items()
    }
    assert by_campaign == {
        "catalog:sales": [("leads", "quinn"), ("wiki", "pat"), ("wiki", "sue")],
        "crm": [("crm", "pat")],
    }


def test_the_catalog_owners_review_its_items(session, opened):
    """`owners` in a catalog's review are the catalog's owners (sid), not a package's."""
    catalog_items = [item for key, item in opened.items() if key[0] != "crm"]
    for item in catalog_items:
        reviewers = session.scalars(
            select(ReviewReviewer.user_id).where(ReviewReviewer.item_id == item.id)
        ).all()
        assert reviewers == ["sid"]


def test_closing_the_catalog_campaign_applies_decisions_and_the_default(session, runtime, opened):
    """sid keeps pat's wiki; sue's wiki and quinn's leads get no answer and are removed."""
    reviews = ReviewService(session, runtime)
    reviews.decide(Actor("sid", Role.USER), opened["wiki", "pat"].id, "keep", "needed", now=NOW)
    assert reviews.close_due(now=ENDS) == 2
    session.expire_all()
    results = {(i.package, i.subject_id): i.result for i in session.scalars(select(ReviewItem))}
    assert results == {
        ("wiki", "pat"): "kept",
        ("wiki", "sue"): "removed",
        ("leads", "quinn"): "removed",
        ("crm", "pat"): "removed",
    }
    states = {
        (a.package, a.subject_id): a.state
        for a in session.scalars(select(Assignment).where(Assignment.package != "crm"))
    }
    assert states[("wiki", "pat")] == "active"
    assert states[("wiki", "sue")] != "active" and states[("leads", "quinn")] != "active"
