"""expiry reminders belong to their assignment

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PREFIX = "access_expiring:"


def upgrade() -> None:
    # The reminder sweep finds reminders already sent through jobs.assignment_id (indexed);
    # reminders queued before this revision name their assignment only in `resource`.
    op.execute(
        f"UPDATE jobs SET assignment_id = substr(resource, {len(PREFIX) + 1}) "
        f"WHERE kind = 'notify' AND assignment_id IS NULL AND resource LIKE '{PREFIX}%'"
    )


def downgrade() -> None:
    op.execute(
        f"UPDATE jobs SET assignment_id = NULL WHERE kind = 'notify' AND resource LIKE '{PREFIX}%'"
    )
