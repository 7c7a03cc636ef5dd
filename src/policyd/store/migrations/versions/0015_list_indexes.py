"""indexes that end with each list's order, for keyset pages; memberships by person; decision refs

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# (name, table, columns now, columns before or None when new): each list reads a page as a
# range of one index, newest first by reading it backwards, instead of sorting every match.
# CREATE INDEX holds off writes to its table while it builds: on a large database, plan the
# upgrade for a quiet moment (bench/million.py builds all 31 secondary indexes of a million
# assignments and 5 M decisions in about 2 minutes on 2 busy cores).
INDEXES = [
    ("ix_decisions_at", "decisions", ["at", "id"], ["at"]),
    ("ix_decisions_subject_at", "decisions", ["subject_id", "at", "id"], ["subject_id", "at"]),
    ("ix_decisions_package", "decisions", ["package", "at", "id"], ["package"]),
    ("ix_decisions_version", "decisions", ["version", "at", "id"], ["version"]),
    ("ix_requests_created", "requests", ["created_at", "id"], None),
    ("ix_requests_state", "requests", ["state", "created_at", "id"], ["state"]),
    ("ix_requests_subject_id", "requests", ["subject_id", "created_at", "id"], ["subject_id"]),
    ("ix_assignments_starts", "assignments", ["starts_at", "id"], None),
    ("ix_assignments_state", "assignments", ["state", "starts_at", "id"], ["state"]),
    (
        "ix_assignments_package_starts",
        "assignments",
        ["package", "starts_at", "id"],
        ["package", "starts_at"],
    ),
    (
        "ix_assignments_subject_starts",
        "assignments",
        ["subject_id", "starts_at", "id"],
        ["subject_id", "starts_at"],
    ),
    ("ix_audit_action", "audit", ["action", "id"], ["action"]),
    ("ix_audit_object_id", "audit", ["object_id", "id"], ["object_id"]),
    ("ix_audit_request_id", "audit", ["request_id", "id"], None),
    ("ix_jobs_created", "jobs", ["created_at", "id"], None),
    ("ix_jobs_state_created", "jobs", ["state", "created_at", "id"], None),
    ("ix_memberships_user_id", "memberships", ["user_id"], None),
    # The decision-log retention keeps the entries these refer to, and deleting an entry
    # checks their foreign keys: without these, each check reads the whole table.
    ("ix_requests_decision_id", "requests", ["decision_id"], None),
    ("ix_assignments_decision_id", "assignments", ["decision_id"], None),
]


EXTENDS = "extends_assignment_id IS NOT NULL"


def upgrade() -> None:
    for name, table, columns, before in INDEXES:
        if before is not None:
            op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False)
    # The access report looked up each page's extensions with a scan of every request.
    op.create_index(
        "ix_requests_extends",
        "requests",
        ["extends_assignment_id"],
        unique=False,
        postgresql_where=sa.text(EXTENDS),
        sqlite_where=sa.text(EXTENDS),
    )


def downgrade() -> None:
    op.drop_index("ix_requests_extends", table_name="requests")
    for name, table, _columns, before in reversed(INDEXES):
        op.drop_index(name, table_name=table)
        if before is not None:
            op.create_index(name, table, before, unique=False)
