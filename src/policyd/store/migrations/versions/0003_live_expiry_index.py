"""index live assignments by expiry

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LIVE = "state IN ('delivering', 'active', 'failed')"


def upgrade() -> None:
    # The expiry sweep reads live assignments in expires_at order; without this partial
    # index it walks every ended assignment too, which grows with every expiry.
    op.create_index(
        "ix_assignments_live_expiry",
        "assignments",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text(LIVE),
        sqlite_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("ix_assignments_live_expiry", table_name="assignments")
