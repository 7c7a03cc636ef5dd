"""whether the policies had uncommitted changes when a version was published

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Versions published before this revision: not known (NULL).
    op.add_column("policy_versions", sa.Column("git_dirty", sa.Boolean(), nullable=True))


def downgrade() -> None:
    op.drop_column("policy_versions", "git_dirty")
