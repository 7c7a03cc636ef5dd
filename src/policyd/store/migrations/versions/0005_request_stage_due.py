"""when the current approval stage of a request times out

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from alembic import op

import policyd.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PENDING = "state = 'pending_approval'"


def upgrade() -> None:
    op.add_column(
        "requests",
        sa.Column("stage_due_at", policyd.store.types.UTCDateTime(timezone=True), nullable=True),
    )
    # The timeout sweep reads only waiting requests whose stage is due, through this index,
    # instead of locking and reading every waiting request on every sweep.
    op.create_index(
        "ix_requests_stage_due",
        "requests",
        ["stage_due_at"],
        unique=False,
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    requests = sa.table(
        "requests",
        sa.column("id", sa.String),
        sa.column("state", sa.String),
        sa.column("stage", sa.Integer),
        sa.column("stages", sa.JSON),
        sa.column("stage_due_at", policyd.store.types.UTCDateTime(timezone=True)),
    )
    connection = op.get_bind()
    waiting = connection.execute(
        sa.select(requests.c.id, requests.c.stage, requests.c.stages).where(
            requests.c.state == "pending_approval"
        )
    ).all()
    for request_id, number, stages in waiting:
        stage = stages[number - 1]
        due = datetime.fromisoformat(stage["started_at"]) + timedelta(
            seconds=stage["timeout_seconds"]
        )
        connection.execute(
            requests.update().where(requests.c.id == request_id).values(stage_due_at=due)
        )


def downgrade() -> None:
    op.drop_index("ix_requests_stage_due", table_name="requests")
    op.drop_column("requests", "stage_due_at")
