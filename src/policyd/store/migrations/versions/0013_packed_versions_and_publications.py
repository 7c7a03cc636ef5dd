"""the packed, validated form of each policy version (loaded by processes instead of its files),
and publications accepted over the API for a worker to publish

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from policyd.store.types import UTCDateTime

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions published before this revision have none: they load from their files.
    op.add_column("policy_versions", sa.Column("packed", sa.Text(), nullable=True))
    op.create_table(
        "policy_publications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("files", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("connectors", sa.JSON(), nullable=True),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("version_id", sa.String(12), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
    )
    op.create_index("ix_policy_publications_state", "policy_publications", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_policy_publications_state", table_name="policy_publications")
    op.drop_table("policy_publications")
    op.drop_column("policy_versions", "packed")
