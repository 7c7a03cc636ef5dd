"""auto-assignment: each assignment's origin, and the queue of users to evaluate

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import policyd.store.types

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "assignments",
        sa.Column("origin", sa.String(10), nullable=False, server_default="request"),
    )
    # Direct assignments name this rule (policyd.services.direct_assignments.DIRECT_RULE).
    op.execute(
        "UPDATE assignments SET origin = 'direct' WHERE request_id IN "
        "(SELECT id FROM requests WHERE rule = 'direct-assignment')"
    )
    op.create_table(
        "auto_assign_queue",
        sa.Column("subject_id", sa.String(200), primary_key=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("marked_at", policyd.store.types.UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_auto_assign_queue_marked_at", "auto_assign_queue", ["marked_at"])


def downgrade() -> None:
    op.drop_index("ix_auto_assign_queue_marked_at", table_name="auto_assign_queue")
    op.drop_table("auto_assign_queue")
    op.drop_column("assignments", "origin")
