"""ix_jobs_grant_resource carries what reconcile reads of a grant (PostgreSQL INCLUDE)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

GRANT = sa.text("kind = 'grant'")
CARRIED = ["connector", "role", "subject_id", "assignment_id", "state"]


def upgrade() -> None:
    # A page of reconcile reads the grants of 1,000 resources, scattered over the table:
    # from the index alone, not one heap page per grant. SQLite has no INCLUDE.
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_jobs_grant_resource", table_name="jobs")
    op.create_index(
        "ix_jobs_grant_resource",
        "jobs",
        ["resource"],
        postgresql_where=GRANT,
        postgresql_include=CARRIED,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_jobs_grant_resource", table_name="jobs")
    op.create_index("ix_jobs_grant_resource", "jobs", ["resource"], postgresql_where=GRANT)
