"""index assignments by (expires_at, id) for the list filtered by expiring_before

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # GET /v1/assignments?expiring_before= pages in (expires_at, id) order, newest first,
    # as one backward range of this index. Not partial: the filter keeps every state, and a
    # bound parameter never lets SQLite prove a partial index's condition.
    op.create_index("ix_assignments_expires", "assignments", ["expires_at", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_assignments_expires", table_name="assignments")
