"""the requester's answers to a package's questions, stored with the request

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Requests filed before this revision answered no questions (NULL).
    op.add_column("requests", sa.Column("answers", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "answers")
