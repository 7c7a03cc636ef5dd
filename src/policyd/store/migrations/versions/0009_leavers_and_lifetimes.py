"""users who left (deleted or disabled) and the lifetime terms of a request

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import policyd.store.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A deleted user stays as a tombstone, so revokes can still reach them and history keeps
    # who held access; a disabled one stays visible. Both have lost their access.
    op.add_column(
        "users",
        sa.Column("state", sa.String(length=10), nullable=False, server_default="active"),
    )
    op.add_column(
        "users",
        sa.Column("left_at", policyd.store.types.UTCDateTime(timezone=True), nullable=True),
    )
    # How the access's lifetime is counted once granted, and why (clamps included).
    op.add_column("requests", sa.Column("lifetime", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "lifetime")
    op.drop_column("users", "left_at")
    op.drop_column("users", "state")
