"""index queued jobs by kind and due time

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

QUEUED = "state = 'queued'"


def upgrade() -> None:
    # Finishing the due jobs of one kind (notifications with no notifier configured) read
    # ix_jobs_due and skipped every queued job of the other kinds: with the revokes of a
    # mass expiry queued, each batch walked all of them.
    op.create_index(
        "ix_jobs_queued_kind",
        "jobs",
        ["kind", "run_at"],
        unique=False,
        postgresql_where=sa.text(QUEUED),
        sqlite_where=sa.text(QUEUED),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_queued_kind", table_name="jobs")
