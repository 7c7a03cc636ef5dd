"""decision-log entries get a kept flag; on PostgreSQL, partitions by it and by month

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from policyd.store.partitions import DEFAULT, KEPT, LOG, Month, create_month, month_of

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

OLD = "decisions_unpartitioned"
INDEXES = [
    ("ix_decisions_at", ["at", "id"]),
    ("ix_decisions_subject_at", ["subject_id", "at", "id"]),
    ("ix_decisions_package", ["package", "at", "id"]),
    ("ix_decisions_version", ["version", "at", "id"]),
]
REFERENCING = ("requests", "assignments")  # their decision_id refers to an entry
KEPT_NOW = (
    "EXISTS (SELECT 1 FROM requests r WHERE r.decision_id = d.id)"
    " OR EXISTS (SELECT 1 FROM assignments a WHERE a.decision_id = d.id)"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.add_column(
            "decisions",
            sa.Column("kept", sa.Boolean(), nullable=False, server_default=sa.false()),
        )
        op.execute(f"UPDATE decisions AS d SET kept = true WHERE {KEPT_NOW}")
        return
    # The copy is one INSERT ... SELECT in the upgrade's transaction, which holds the old
    # table from the rename on: stored decisions wait in the spool meanwhile, filing a request
    # waits (docs/storage.md; bench/retention.py times it: plan a quiet moment).
    # A partitioned table's unique keys must hold its partition keys, so decision_id alone
    # can refer to no entry: the kept flag stands for these foreign keys (retention never
    # deletes a kept entry, and nothing else deletes entries).
    for table in REFERENCING:
        for key in sa.inspect(op.get_bind()).get_foreign_keys(table):
            if key["referred_table"] == "decisions":
                op.drop_constraint(key["name"], table, type_="foreignkey")
    for name, _columns in INDEXES:
        op.drop_index(name, table_name="decisions")
    op.execute(f"ALTER TABLE decisions RENAME TO {OLD}")
    op.execute(f"ALTER TABLE {OLD} RENAME CONSTRAINT decisions_pkey TO {OLD}_pkey")
    op.execute(
        f"CREATE TABLE decisions (LIKE {OLD} INCLUDING DEFAULTS,"
        " kept boolean NOT NULL DEFAULT false) PARTITION BY LIST (kept)"
    )
    op.execute("ALTER TABLE decisions ADD CONSTRAINT decisions_pkey PRIMARY KEY (id, kept, at)")
    op.execute(f"CREATE TABLE {KEPT} PARTITION OF decisions FOR VALUES IN (true)")
    op.execute(
        f"CREATE TABLE {LOG} PARTITION OF decisions FOR VALUES IN (false) PARTITION BY RANGE (at)"
    )
    op.execute(f"CREATE TABLE {DEFAULT} PARTITION OF {LOG} DEFAULT")
    connection = op.get_bind()
    oldest = connection.scalar(sa.text(f"SELECT min(at) FROM {OLD}"))
    now = datetime.now(UTC)
    month = Month(month_of(min(oldest, now) if oldest is not None else now))
    last = Month(month_of(now)).next()  # this month's and the next one's, like the task
    while month.start <= last.start:
        create_month(connection, month)
        month = month.next()
    op.execute(f"INSERT INTO decisions SELECT d.*, {KEPT_NOW} FROM {OLD} AS d")
    for name, columns in INDEXES:
        op.create_index(name, "decisions", columns, unique=False)
    op.execute(f"DROP TABLE {OLD}")
    op.execute("ANALYZE decisions")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("ALTER TABLE decisions DROP COLUMN kept")
        return
    op.execute(f"CREATE TABLE {OLD} (LIKE decisions INCLUDING DEFAULTS)")
    op.execute(f"ALTER TABLE {OLD} DROP COLUMN kept")
    op.execute(f"INSERT INTO {OLD} SELECT {_columns()} FROM decisions")
    op.execute("DROP TABLE decisions")
    op.execute(f"ALTER TABLE {OLD} RENAME TO decisions")
    op.execute("ALTER TABLE decisions ADD CONSTRAINT decisions_pkey PRIMARY KEY (id)")
    for name, columns in INDEXES:
        op.create_index(name, "decisions", columns, unique=False)
    for table in REFERENCING:
        op.create_foreign_key(None, table, "decisions", ["decision_id"], ["id"])


def _columns() -> str:
    names = op.get_bind().scalars(
        sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = :t"
            " AND column_name <> 'kept' ORDER BY ordinal_position"
        ),
        {"t": OLD},
    )
    return ", ".join(names)
