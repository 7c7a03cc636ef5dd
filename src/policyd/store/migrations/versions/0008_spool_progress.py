"""how far each decision-log spool file is stored

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spool_progress",
        sa.Column("spool", sa.String(length=100), nullable=False),
        sa.Column("stored", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("spool"),
    )


def downgrade() -> None:
    op.drop_table("spool_progress")
