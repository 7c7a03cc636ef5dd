"""Access reviews: reviewers list and decide their items; campaigns and their CSV export."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select

from policyd.periodic import TaskContext, periodic_task
from policyd.rules.model import Verdict
from policyd.services.actor import Actor, Role
from policyd.services.audit import audit
from policyd.services.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from policyd.services.review_campaigns import CampaignState, ReviewCampaigns, item_view
from policyd.store.models import ReviewCampaign, ReviewItem, ReviewReviewer
from policyd.store.query import among, page

MAX_JUSTIFICATION = 2000
CSV_COLUMNS = (
    "campaign_id",
    "package",
    "review",
    "version",
    "item_id",
    "assignment_id",
    "subject_id",
    "reviewers",
    "recommendation",
    "recommendation_rule",
    "recommendation_reason",
    "decision",
    "justification",
    "decided_by",
    "decided_at",
    "result",
    "applied_at",
)


class ItemState(StrEnum):
    """Listing filter: `pending` (no decision yet), `decided`, `applied` (campaign closed)."""

    PENDING = "pending"
    DECIDED = "decided"
    APPLIED = "applied"


class ReviewService(ReviewCampaigns):
    """Access reviews (docs/reviews.md). The worker calls open_due, remind_due and
    close_due with `now`."""

    # reviewers -------------------------------------------------------------------------------
    def decide(
        self,
        actor: Actor,
        item_id: str,
        decision: str,
        justification: str | None,
        *,
        now: datetime,
    ) -> ReviewItem:
        """Record a reviewer's keep or remove, with a justification, while the campaign is
        open (again, to change it). Only the item's reviewers or an admin decide; nobody
        decides on their own access unless the review declares `self`."""
        try:
            verdict = Verdict(decision)
        except ValueError:
            raise InvalidError("decision is keep or remove", field="decision") from None
        text = (justification or "").strip()
        if not text:
            raise InvalidError("a decision needs a justification", field="justification")
        if len(text) > MAX_JUSTIFICATION:
            raise InvalidError(f"at most {MAX_JUSTIFICATION} characters", field="justification")
        item = self._item(actor, item_id, lock=True)
        # Shared: closing (FOR UPDATE) waits for this decision, or this one sees it closed.
        campaign = self.session.get(
            ReviewCampaign, item.campaign_id, with_for_update={"read": True}
        )
        if campaign.state != CampaignState.OPEN:
            raise ConflictError("the campaign is closed", field="state")
        if actor.principal == item.subject_id and not campaign.self_review:
            raise ForbiddenError("nobody reviews their own access in this review")
        if actor.role is not Role.ADMIN and not self._is_reviewer(item.id, actor.principal):
            raise ForbiddenError("only the item's reviewers or an admin decide it")
        before = item_view(item)
        item.decision, item.justification = str(verdict), text
        item.decided_by, item.decided_at = actor.principal, now
        audit(
            self.session,
            actor,
            "review.decided",
            ("review_item", item.id),
            now=now,
            before=before,
            after=item_view(item),
            version=campaign.version,
        )
        self.session.commit()
        return item

    def _is_reviewer(self, item_id: str, user_id: str) -> bool:
        return self.session.get(ReviewReviewer, (item_id, user_id)) is not None

    def _item(self, actor: Actor, item_id: str, *, lock: bool = False) -> ReviewItem:
        item = self.session.get(ReviewItem, item_id, with_for_update=lock or None)
        visible = item is not None and (
            actor.reads_all
            or item.subject_id == actor.principal  # holders see the review of their access
            or self._is_reviewer(item_id, actor.principal)
        )
        if not visible:
            raise NotFoundError(f"no review item {item_id!r}", field="id")
        return item

    def get_item(self, actor: Actor, item_id: str) -> ReviewItem:
        return self._item(actor, item_id)

    def items(
        self,
        actor: Actor,
        *,
        campaign: str | None = None,
        reviewer: str | None = None,
        state: str | None = ItemState.PENDING,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[ReviewItem], int]:
        """Review items; a user sees those they review (pending ones by default)."""
        query = select(ReviewItem).join(ReviewCampaign, ReviewCampaign.id == ReviewItem.campaign_id)
        if not actor.reads_all:
            reviewer = actor.principal
        if reviewer:
            mine = select(ReviewReviewer.item_id).where(ReviewReviewer.user_id == reviewer)
            query = query.where(ReviewItem.id.in_(mine))
        if campaign:
            query = query.where(ReviewItem.campaign_id == campaign)
        if state == ItemState.PENDING:
            query = query.where(
                ReviewCampaign.state == CampaignState.OPEN, ReviewItem.decision.is_(None)
            )
        elif state == ItemState.DECIDED:
            query = query.where(ReviewItem.decision.is_not(None))
        elif state == ItemState.APPLIED:
            query = query.where(ReviewItem.result.is_not(None))
        query = query.order_by(ReviewCampaign.ends_at, ReviewItem.subject_id, ReviewItem.id)
        return page(self.session, query, offset, limit)

    def reviewers_of(self, item_ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for start in range(0, len(item_ids), 5000):
            for item_id, user_id in self.session.execute(
                select(ReviewReviewer.item_id, ReviewReviewer.user_id)
                .where(among(self.session, ReviewReviewer.item_id, item_ids[start : start + 5000]))
                .order_by(ReviewReviewer.user_id)
            ):
                found[item_id].append(user_id)
        return found

    # campaigns and export --------------------------------------------------------------------
    def campaigns(
        self,
        actor: Actor,
        *,
        package: str | None = None,
        state: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[ReviewCampaign], int]:
        query = select(ReviewCampaign)
        if package:
            query = query.where(ReviewCampaign.package == package)
        if state:
            query = query.where(ReviewCampaign.state == state)
        query = query.order_by(ReviewCampaign.starts_at.desc(), ReviewCampaign.id)
        return page(self.session, query, offset, limit)

    def campaign(self, actor: Actor, campaign_id: str) -> ReviewCampaign:
        campaign = self.session.get(ReviewCampaign, campaign_id)
        if campaign is None:
            raise NotFoundError(f"no review campaign {campaign_id!r}", field="id")
        return campaign

    def export_csv(self, actor: Actor, campaign_id: str) -> str:
        """Every item of a campaign as CSV (CSV_COLUMNS), for auditors."""
        campaign = self.campaign(actor, campaign_id)
        items = self.session.scalars(
            select(ReviewItem)
            .where(ReviewItem.campaign_id == campaign.id)
            .order_by(ReviewItem.subject_id, ReviewItem.id)
        ).all()
        reviewers = self.reviewers_of([item.id for item in items])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for item in items:
            writer.writerow(
                [
                    campaign.id,
                    campaign.package,
                    campaign.review,
                    campaign.version,
                    item.id,
                    item.assignment_id,
                    item.subject_id,
                    " ".join(reviewers.get(item.id, [])),
                    item.recommendation or "",
                    item.recommendation_rule or "",
                    item.recommendation_reason or "",
                    item.decision or "",
                    item.justification or "",
                    item.decided_by or "",
                    item.decided_at.isoformat() if item.decided_at else "",
                    item.result or "",
                    item.applied_at.isoformat() if item.applied_at else "",
                ]
            )
        return out.getvalue()


# Campaign schedules have minute resolution, so opening and closing follow the worker's pass;
# closing runs before expiry (order 10) so an ended campaign's removals go with that sweep.
@periodic_task("reviews.open")
def open_reviews(context: TaskContext, now: datetime) -> dict[str, int]:
    """Open the access-review campaigns whose schedule fired."""
    with context.sessions() as session:
        return {"opened": ReviewService(session, context.runtime).open_due(now=now)}


@periodic_task("reviews.remind", every=timedelta(minutes=15))
def remind_reviewers(context: TaskContext, now: datetime) -> dict[str, int]:
    """Hand on review items whose reviewers left; remind reviewers before the end."""
    with context.sessions() as session:
        return {"reminded": ReviewService(session, context.runtime).remind_due(now=now)}


@periodic_task("reviews.close", order=5)
def close_reviews(context: TaskContext, now: datetime) -> dict[str, int]:
    """Close ended access-review campaigns, removing what they remove (before expiry)."""
    closed = 0
    while True:
        with context.sessions() as session:
            count = ReviewService(session, context.runtime).close_due(now=now)
        closed += count
        if count == 0:
            return {"closed": closed}
