"""drop ix_assignments_expires_at, which ix_assignments_expires (expires_at, id) covers

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every lookup by expires_at is served by the first column of ix_assignments_expires;
    # the single-column index only cost an entry on each change of an assignment's state
    # (two per expiry: expiring, then removed).
    op.drop_index("ix_assignments_expires_at", table_name="assignments")


def downgrade() -> None:
    op.create_index("ix_assignments_expires_at", "assignments", ["expires_at"], unique=False)
