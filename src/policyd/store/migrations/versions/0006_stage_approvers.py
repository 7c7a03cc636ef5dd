"""the approvers of each waiting stage, for the approver inbox

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_approvers",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("request_id", "user_id"),
    )
    op.create_index(
        op.f("ix_stage_approvers_user_id"), "stage_approvers", ["user_id"], unique=False
    )
    # Requests already waiting: their current stage's approvers, from the stages snapshot.
    requests = sa.table(
        "requests",
        sa.column("id", sa.String),
        sa.column("state", sa.String),
        sa.column("stage", sa.Integer),
        sa.column("stages", sa.JSON),
    )
    approvers = sa.table(
        "stage_approvers", sa.column("request_id", sa.String), sa.column("user_id", sa.String)
    )
    connection = op.get_bind()
    waiting = connection.execute(
        sa.select(requests.c.id, requests.c.stage, requests.c.stages).where(
            requests.c.state == "pending_approval"
        )
    ).all()
    rows = [
        {"request_id": request_id, "user_id": user}
        for request_id, number, stages in waiting
        for user in dict.fromkeys(stages[number - 1]["approvers"])
    ]
    if rows:
        connection.execute(approvers.insert(), rows)


def downgrade() -> None:
    op.drop_index(op.f("ix_stage_approvers_user_id"), table_name="stage_approvers")
    op.drop_table("stage_approvers")
