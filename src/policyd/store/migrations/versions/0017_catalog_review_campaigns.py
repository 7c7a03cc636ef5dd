"""a campaign of a catalog's review records `catalog:<id>` as its package: room for it

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_campaigns") as batch:
        batch.alter_column(
            "package", existing_type=sa.String(64), type_=sa.String(80), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("review_campaigns") as batch:
        batch.alter_column(
            "package", existing_type=sa.String(80), type_=sa.String(64), existing_nullable=False
        )
