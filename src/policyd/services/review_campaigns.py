"""Review campaigns over time: opened on schedule, reminders, results applied at the end."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from policyd.rules import PolicyRuntime
from policyd.rules.model import NoResponse, Verdict
from policyd.rules.review import Advisor, ReviewScope, find_scope, last_start, review_scopes
from policyd.services.actor import SYSTEM
from policyd.services.assignments import LIVE_STATES, AssignmentService
from policyd.services.audit import audit, audit_many
from policyd.services.notifications import notify_many, tell_review_owners
from policyd.services.review_opening import ACTIVE_USER, build_items, reviewers_now
from policyd.store.models import Assignment, ReviewCampaign, ReviewItem, ReviewReviewer, User
from policyd.store.query import among, insert_many, update_many
from policyd.store.types import new_id


class CampaignState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Result(StrEnum):
    KEPT = "kept"
    REMOVED = "removed"
    GONE = "gone"  # the access had already ended when the campaign closed


def campaign_view(campaign: ReviewCampaign) -> dict[str, Any]:
    return {
        "package": campaign.package,
        "review": campaign.review,
        "state": campaign.state,
        "starts_at": campaign.starts_at.isoformat(),
        "ends_at": campaign.ends_at.isoformat(),
        "on_no_response": campaign.on_no_response,
    }


def item_view(item: ReviewItem) -> dict[str, Any]:
    return {
        "assignment_id": item.assignment_id,
        "subject_id": item.subject_id,
        "package": item.package,
        "recommendation": item.recommendation,
        "decision": item.decision,
        "justification": item.justification,
        "decided_by": item.decided_by,
        "result": item.result,
    }


def outcome(item: ReviewItem, on_no_response: str) -> tuple[Verdict, str]:
    """What closing does with an item, and on whose word: a reviewer's decision, else the
    campaign's default (`recommendation`: the recommendation, keep where there is none)."""
    if item.decision:
        return Verdict(item.decision), "decision"
    if on_no_response == NoResponse.RECOMMENDATION:
        if item.recommendation:
            return Verdict(item.recommendation), "recommendation"
        return Verdict.KEEP, "no recommendation"
    return Verdict(on_no_response), "no response"


class ReviewCampaigns:
    """The periodic steps of reviews (a part of ReviewService): each an idempotent
    function of `now` for the worker, the CLI and tests."""

    def __init__(self, session: Session, runtime: PolicyRuntime):
        self.session = session
        self.runtime = runtime

    # periodic steps --------------------------------------------------------------------------
    def open_due(self, *, now: datetime) -> int:
        """Open every review whose schedule fired and whose campaign is not open yet (nor
        over); returns how many opened. Idempotent: two workers open a campaign once."""
        policy = self.runtime.active
        if policy is None:
            return 0
        due = []
        for scope in review_scopes(policy.bundle):
            start = last_start(scope.review, now)
            if start is not None and now < start + scope.review.duration:
                due.append((scope, start))
        if not due:
            return 0
        existing = {
            tuple(row)
            for row in self.session.execute(
                select(
                    ReviewCampaign.package, ReviewCampaign.review, ReviewCampaign.starts_at
                ).where(ReviewCampaign.starts_at >= min(start for _, start in due))
            )
        }
        opened = 0
        advisor: Advisor | None = None
        try:
            for scope, start in due:
                if (scope.id, scope.review.id, start) in existing:
                    continue
                advisor = advisor or Advisor(policy.bundle)
                opened += self._open(scope, start, policy.version, advisor, now)
        finally:
            if advisor is not None:
                advisor.close()
        return opened

    def _open(
        self, scope: ReviewScope, start: datetime, version: str, advisor: Advisor, now: datetime
    ) -> int:
        """Open one campaign of `scope`'s review (a catalog's: one campaign for all its
        packages) and commit it; 0 when another process opened it first."""
        review = scope.review
        campaign = ReviewCampaign(
            id=new_id(),
            package=scope.id,
            review=review.id,
            version=version,
            state=CampaignState.OPEN,
            on_no_response=str(review.on_no_response),
            self_review=review.self_review,
            reminders=[int(_seconds(r, start)) for r in review.reminders],
            reminded=[],
            starts_at=start,
            ends_at=start + review.duration,
            opened_at=now,
        )
        self.session.add(campaign)
        try:
            self.session.flush()
        except IntegrityError:  # another worker opened it just now
            self.session.rollback()
            return 0
        assignments = self.session.scalars(
            select(Assignment)
            .where(Assignment.package.in_(scope.packages), Assignment.state.in_(LIVE_STATES))
            .order_by(Assignment.subject_id, Assignment.package, Assignment.id)
        ).all()
        items, reviewers = build_items(
            self.session, campaign.id, scope, assignments, advisor, now=now
        )
        _insert(self.session, ReviewItem, items)
        _insert(self.session, ReviewReviewer, reviewers)
        self._record_opening(campaign, items, reviewers, now=now)
        self.session.commit()
        return 1

    def _record_opening(
        self,
        campaign: ReviewCampaign,
        items: list[dict[str, Any]],
        reviewers: list[dict[str, str]],
        *,
        now: datetime,
    ) -> None:
        """Audit the campaign and each item (its reviewers and recommendation); tell the
        reviewers, and the owners and managers of its packages who are not among them."""
        version = campaign.version
        audit(
            self.session,
            SYSTEM,
            "review.opened",
            ("review_campaign", campaign.id),
            now=now,
            after={**campaign_view(campaign), "items": len(items)},
            version=version,
        )
        by_item = defaultdict(list)
        for row in reviewers:
            by_item[row["item_id"]].append(row["user_id"])
        audit_many(
            self.session,
            SYSTEM,
            now,
            [
                {
                    "action": "review.item_opened",
                    "object": ("review_item", item["id"]),
                    "after": {
                        "campaign_id": campaign.id,
                        "assignment_id": item["assignment_id"],
                        "subject_id": item["subject_id"],
                        "reviewers": by_item[item["id"]],
                        "recommendation": item["recommendation"],
                        "recommendation_rule": item["recommendation_rule"],
                    },
                    "version": version,
                }
                for item in items
            ],
        )
        told = sorted({row["user_id"] for row in reviewers})
        notify_many(self.session, [("review_needed", campaign.id, u) for u in told], now=now)
        if self.runtime.active is not None:
            bundle = self.runtime.active.bundle
            tell_review_owners(self.session, bundle, campaign.id, items, reviewers, now=now)

    def remind_due(self, *, now: datetime) -> int:
        """Hand the undecided items whose reviewers have all left to the review's reviewers
        as they resolve now (else its fallback), then remind reviewers who still have items
        to decide at each reminder offset before the end. Returns how many reminders and
        hand-overs were queued. Idempotent."""
        queued = 0
        campaigns = self.session.scalars(
            select(ReviewCampaign)
            .where(ReviewCampaign.state == CampaignState.OPEN, ReviewCampaign.ends_at > now)
            .with_for_update(skip_locked=True)
        ).all()
        for campaign in campaigns:
            queued += self._hand_on(campaign, now=now)
            due = [
                s
                for s in campaign.reminders
                if s not in campaign.reminded and campaign.ends_at - timedelta(seconds=s) <= now
            ]
            if not due:
                continue
            waiting = sorted(
                set(
                    self.session.scalars(
                        select(ReviewReviewer.user_id)
                        .join(ReviewItem, ReviewItem.id == ReviewReviewer.item_id)
                        .outerjoin(User, User.id == ReviewReviewer.user_id)
                        .where(
                            ReviewItem.campaign_id == campaign.id,
                            ReviewItem.decision.is_(None),
                            or_(User.id.is_(None), User.state == ACTIVE_USER),
                        )
                    )
                )
            )
            notify_many(
                self.session, [("review_reminder", campaign.id, u) for u in waiting], now=now
            )
            campaign.reminded = [*campaign.reminded, *due]
            queued += len(waiting)
        self.session.commit()
        return queued

    def _hand_on(self, campaign: ReviewCampaign, *, now: datetime) -> int:
        """New reviewers for undecided items whose every reviewer has left; how many were
        told. Items of a review the active rules no longer declare stay with an admin."""
        present = (
            select(ReviewReviewer.item_id)
            .outerjoin(User, User.id == ReviewReviewer.user_id)
            .where(or_(User.id.is_(None), User.state == ACTIVE_USER))
        )
        orphans = self.session.scalars(
            select(ReviewItem).where(
                ReviewItem.campaign_id == campaign.id,
                ReviewItem.decision.is_(None),
                ReviewItem.id.in_(select(ReviewReviewer.item_id)),
                ReviewItem.id.not_in(present),
            )
        ).all()
        policy = self.runtime.active
        scope = find_scope(policy.bundle, campaign.package, campaign.review) if policy else None
        if not orphans or scope is None:
            return 0
        rows = reviewers_now(self.session, scope, orphans)
        _insert(self.session, ReviewReviewer, rows)
        audit_many(
            self.session,
            SYSTEM,
            now,
            [
                {
                    "action": "review.reassigned",
                    "object": ("review_item", row["item_id"]),
                    "after": {"reviewer": row["user_id"], "reason": "every reviewer left"},
                    "version": campaign.version,
                }
                for row in rows
            ],
        )
        told = sorted({row["user_id"] for row in rows})
        notify_many(self.session, [("review_needed", campaign.id, u) for u in told], now=now)
        return len(told)

    def close_due(self, *, now: datetime, limit: int = 10) -> int:
        """Close every open campaign whose end has passed (`limit` at most), applying its
        results: removals end the assignment through the revoke outbox (reference counted),
        everything else stays. Returns how many closed. Idempotent."""
        campaigns = self.session.scalars(
            select(ReviewCampaign)
            .where(ReviewCampaign.state == CampaignState.OPEN, ReviewCampaign.ends_at <= now)
            .order_by(ReviewCampaign.ends_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for campaign in campaigns:
            self._close(campaign, now)
            self.session.commit()
        return len(campaigns)

    def _close(self, campaign: ReviewCampaign, now: datetime) -> None:
        items = self.session.scalars(
            select(ReviewItem).where(ReviewItem.campaign_id == campaign.id).order_by(ReviewItem.id)
        ).all()
        live = {
            a.id: a
            for a in self._locked_assignments([i.assignment_id for i in items])
            if a.state in LIVE_STATES
        }
        ending: list[Assignment] = []
        by_result: dict[str, list[ReviewItem]] = defaultdict(list)
        records = []
        for item in items:
            verdict, basis = outcome(item, campaign.on_no_response)
            assignment = live.get(item.assignment_id)
            if assignment is None:
                result = Result.GONE
            elif verdict is Verdict.REMOVE:
                result = Result.REMOVED
                ending.append(assignment)
            else:
                result = Result.KEPT
            by_result[result].append(item)
            records.append(
                {
                    "action": "review.applied",
                    "object": ("review_item", item.id),
                    "before": item_view(item),
                    "after": {**item_view(item), "result": str(result), "basis": basis},
                    "version": campaign.version,
                }
            )
        for result, changed in by_result.items():
            update_many(self.session, changed, result=str(result), applied_at=now)
        audit_many(self.session, SYSTEM, now, records)
        AssignmentService(self.session, self.runtime).end_many(
            SYSTEM, ending, "assignment.review_removed", now=now
        )
        before = campaign_view(campaign)
        campaign.state, campaign.closed_at = CampaignState.CLOSED, now
        counts = {str(result): len(changed) for result, changed in by_result.items()}
        audit(
            self.session,
            SYSTEM,
            "review.closed",
            ("review_campaign", campaign.id),
            now=now,
            before=before,
            after={**campaign_view(campaign), "results": counts},
            version=campaign.version,
        )

    def _locked_assignments(self, ids: Sequence[str]) -> list[Assignment]:
        found: list[Assignment] = []
        for start in range(0, len(ids), 5000):
            found += self.session.scalars(
                select(Assignment)
                .where(among(self.session, Assignment.id, ids[start : start + 5000]))
                .order_by(Assignment.id)
                .with_for_update()
            ).all()
        return found


def _insert(session: Session, model: type, rows: list[dict[str, Any]]) -> None:
    """insert_many, but on SQLite through Core: the ORM's bulk insert sends rows holding
    None one statement each (half of the items, those without a recommendation)."""
    if session.get_bind().dialect.name == "postgresql":
        insert_many(session, model, rows)
    elif rows:
        session.execute(insert(model.__table__), rows)


def _seconds(duration, start: datetime) -> float:
    return ((start + duration) - start).total_seconds()
