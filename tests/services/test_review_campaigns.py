"""Review campaigns over time: opened on schedule, reminders and hand-overs, results applied
when they close."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from policyd.rules.model import Verdict
from policyd.services.actor import Actor, Role
from policyd.services.review_campaigns import ReviewCampaigns, outcome
from policyd.services.reviews import ReviewService
from policyd.store.models import (
    Assignment,
    AuditRecord,
    Job,
    ReviewCampaign,
    ReviewItem,
    User,
)
from tests.review_support import ENDS, NOW, reviewed_in, reviewed_package

FIRST_REMINDER = ENDS - timedelta(days=7)


@pytest.fixture
def grant(session, runtime, deliver):
    return reviewed_in(session, runtime, deliver, reviewed_package())


@pytest.fixture
def campaigns(session, runtime) -> ReviewCampaigns:
    return ReviewCampaigns(session, runtime)


@pytest.fixture
def opened(session, grant, campaigns) -> dict[str, ReviewItem]:
    """crm granted to pat, sue and quinn, its review opened; the items by holder."""
    grant("crm", "pat", "sue", "quinn")
    assert campaigns.open_due(now=NOW) == 1
    return {item.subject_id: item for item in session.scalars(select(ReviewItem))}


def count(session, model, **where) -> int:
    return len(session.scalars(select(model).filter_by(**where)).all())


def told(session, kind: str) -> list[str]:
    query = select(Job.subject_id).where(Job.kind == "notify", Job.resource.startswith(kind))
    return sorted(session.scalars(query))


def test_a_due_review_opens_once_with_an_item_per_holder_audited(session, campaigns, opened):
    """One campaign from 1 to 15 January, an item each, audited, its reviewers told once;
    a second run opens nothing."""
    campaign = session.scalars(select(ReviewCampaign)).one()
    assert (campaign.state, campaign.ends_at, campaign.on_no_response) == ("open", ENDS, "remove")
    assert sorted(opened) == ["pat", "quinn", "sue"]
    assert count(session, AuditRecord, action="review.opened") == 1
    assert count(session, AuditRecord, action="review.item_opened") == 3
    assert told(session, "review_needed") == ["max", "olivia"]
    assert campaigns.open_due(now=NOW + timedelta(hours=1)) == 0


def test_nothing_opens_outside_a_review_s_window(session, grant, campaigns):
    """On 20 January the quarter's review is over and the next is not due."""
    grant("crm", "pat")
    assert campaigns.open_due(now=ENDS + timedelta(days=5)) == 0
    assert count(session, ReviewCampaign) == 0


def test_reviewers_with_items_left_are_reminded_once_per_offset(session, campaigns, opened):
    """Before the first reminder nobody is told; a week before the end, the reviewers of
    undecided items are, once."""
    assert campaigns.remind_due(now=NOW) == 0
    assert campaigns.remind_due(now=FIRST_REMINDER) == 2
    assert told(session, "review_reminder") == ["max", "olivia"]
    assert campaigns.remind_due(now=FIRST_REMINDER + timedelta(hours=1)) == 0


def test_items_whose_reviewers_all_left_go_to_the_fallback(session, campaigns, opened):
    """max leaves: pat's and sue's items go to olivia (the fallback), audited."""
    session.execute(update(User).where(User.id == "max").values(state="disabled"))
    assert campaigns.remind_due(now=NOW + timedelta(hours=1)) == 1
    reassigned = session.scalars(
        select(AuditRecord).where(AuditRecord.action == "review.reassigned")
    ).all()
    assert sorted(record.object_id for record in reassigned) == sorted(
        [opened["pat"].id, opened["sue"].id]
    )
    assert {record.after["reviewer"] for record in reassigned} == {"olivia"}


def test_closing_applies_decisions_and_the_default(session, runtime, campaigns, opened):
    """max keeps pat; sue and quinn get no answer and are removed (the review's default);
    the closing is audited with the counts. Before the end nothing closes."""
    ReviewService(session, runtime).decide(
        Actor("max", Role.USER), opened["pat"].id, "keep", "still on the team", now=NOW
    )
    assert campaigns.close_due(now=ENDS - timedelta(minutes=1)) == 0
    assert campaigns.close_due(now=ENDS) == 1
    session.expire_all()
    results = {item.subject_id: item.result for item in session.scalars(select(ReviewItem))}
    assert results == {"pat": "kept", "sue": "removed", "quinn": "removed"}
    states = dict(session.execute(select(Assignment.subject_id, Assignment.state)).all())
    assert states["pat"] == "active" and states["sue"] != "active"
    closed = session.scalars(select(AuditRecord).where(AuditRecord.action == "review.closed")).one()
    assert closed.after["results"] == {"kept": 1, "removed": 2}
    assert campaigns.close_due(now=ENDS + timedelta(days=1)) == 0


def test_access_ended_before_the_close_is_gone(session, campaigns, opened):
    """quinn's access ended during the campaign: his item's result is `gone`."""
    session.execute(
        update(Assignment).where(Assignment.subject_id == "quinn").values(state="removed")
    )
    campaigns.close_due(now=ENDS)
    session.expire_all()
    assert session.get(ReviewItem, opened["quinn"].id).result == "gone"


def test_the_outcome_is_the_decision_else_the_campaign_s_default():
    """A decision wins; `recommendation` follows the recommendation, else keeps."""
    decided = ReviewItem(decision="keep", recommendation="remove")
    silent = ReviewItem(decision=None, recommendation="remove")
    bare = ReviewItem(decision=None, recommendation=None)
    assert outcome(decided, "remove") == (Verdict.KEEP, "decision")
    assert outcome(silent, "recommendation") == (Verdict.REMOVE, "recommendation")
    assert outcome(bare, "recommendation") == (Verdict.KEEP, "no recommendation")
    assert outcome(bare, "remove") == (Verdict.REMOVE, "no response")
