"""Access review campaigns, their items and reviewers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from policyd.store.models.base import Base
from policyd.store.types import new_id


class ReviewCampaign(Base):
    """One run of a package's (or a catalog's) access review: opened on its schedule,
    closed at `ends_at`."""

    __tablename__ = "review_campaigns"
    __table_args__ = (UniqueConstraint("package", "review", "starts_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    package: Mapped[str] = mapped_column(String(80))  # or `catalog:<id>` for a catalog's review
    review: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(12))  # the rules that opened it
    state: Mapped[str] = mapped_column(String(20), index=True)  # open | closed
    on_no_response: Mapped[str] = mapped_column(String(20))
    self_review: Mapped[bool] = mapped_column()
    reminders: Mapped[list[Any]] = mapped_column(default=list)  # seconds before the end
    reminded: Mapped[list[Any]] = mapped_column(default=list)  # of those, already sent
    starts_at: Mapped[datetime] = mapped_column()  # the schedule's fire time
    ends_at: Mapped[datetime] = mapped_column(index=True)
    opened_at: Mapped[datetime] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()


class ReviewItem(Base):
    """One assignment under review: the recommendation, the decision and what was applied."""

    __tablename__ = "review_items"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("review_campaigns.id", ondelete="CASCADE"), index=True
    )
    assignment_id: Mapped[str] = mapped_column(String(36))
    subject_id: Mapped[str] = mapped_column(String(200))
    package: Mapped[str] = mapped_column(String(64))
    recommendation: Mapped[str | None] = mapped_column(String(10))  # keep | remove
    recommendation_rule: Mapped[str | None] = mapped_column(String(64))
    recommendation_reason: Mapped[str | None] = mapped_column(Text)
    decision: Mapped[str | None] = mapped_column(String(10))  # keep | remove
    justification: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column()
    result: Mapped[str | None] = mapped_column(String(10))  # kept | removed, once applied
    applied_at: Mapped[datetime | None] = mapped_column()


class ReviewReviewer(Base):
    """Who may decide a review item (resolved when the campaign opens)."""

    __tablename__ = "review_reviewers"

    item_id: Mapped[str] = mapped_column(
        ForeignKey("review_items.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
