"""access reviews: campaigns, their items and each item's reviewers

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import policyd.store.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _moment(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, policyd.store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "review_campaigns",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("package", sa.String(length=64), nullable=False),
        sa.Column("review", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=12), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("on_no_response", sa.String(length=20), nullable=False),
        sa.Column("self_review", sa.Boolean(), nullable=False),
        sa.Column("reminders", sa.JSON(), nullable=False),
        sa.Column("reminded", sa.JSON(), nullable=False),
        _moment("starts_at"),
        _moment("ends_at"),
        _moment("opened_at"),
        _moment("closed_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("package", "review", "starts_at"),
    )
    op.create_index(op.f("ix_review_campaigns_state"), "review_campaigns", ["state"])
    op.create_index(op.f("ix_review_campaigns_ends_at"), "review_campaigns", ["ends_at"])
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("campaign_id", sa.String(length=36), nullable=False),
        sa.Column("assignment_id", sa.String(length=36), nullable=False),
        sa.Column("subject_id", sa.String(length=200), nullable=False),
        sa.Column("package", sa.String(length=64), nullable=False),
        sa.Column("recommendation", sa.String(length=10), nullable=True),
        sa.Column("recommendation_rule", sa.String(length=64), nullable=True),
        sa.Column("recommendation_reason", sa.Text(), nullable=True),
        sa.Column("decision", sa.String(length=10), nullable=True),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        _moment("decided_at", nullable=True),
        sa.Column("result", sa.String(length=10), nullable=True),
        _moment("applied_at", nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["review_campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_review_items_campaign_id"), "review_items", ["campaign_id"])
    op.create_table(
        "review_reviewers",
        sa.Column("item_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["review_items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id", "user_id"),
    )
    op.create_index(op.f("ix_review_reviewers_user_id"), "review_reviewers", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_review_reviewers_user_id"), table_name="review_reviewers")
    op.drop_table("review_reviewers")
    op.drop_index(op.f("ix_review_items_campaign_id"), table_name="review_items")
    op.drop_table("review_items")
    op.drop_index(op.f("ix_review_campaigns_ends_at"), table_name="review_campaigns")
    op.drop_index(op.f("ix_review_campaigns_state"), table_name="review_campaigns")
    op.drop_table("review_campaigns")
