"""the packed, validated form of each policy version, loaded by processes instead of its files

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions published before this revision have none: they load from their files.
    op.add_column("policy_versions", sa.Column("packed", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("policy_versions", "packed")
