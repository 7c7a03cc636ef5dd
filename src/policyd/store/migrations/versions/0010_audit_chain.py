"""hash-chained audit records with their request id; indexes of the access report

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
CONTENT = (
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "version",
    "request_id",
)
BATCH = 5000


def _hash(row: dict, prev: str) -> str:
    """The chain's hash as of this revision (docs/audit.md): frozen here, so that this
    migration backfills the same chain whatever the service's code becomes."""
    content = {name: row[name] for name in CONTENT}
    content["at"] = row["at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()
    return hashlib.sha256(f"{row['id']}:{prev}:{digest}".encode("ascii")).hexdigest()


def upgrade() -> None:
    op.add_column("audit", sa.Column("request_id", sa.String(length=128), nullable=True))
    op.add_column("audit", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("audit", sa.Column("hash", sa.String(length=64), nullable=True))
    _backfill()
    with op.batch_alter_table("audit") as batch:
        batch.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
    if op.get_bind().dialect.name == "postgresql":
        # Ids come from the chain's writer (the tail's id + 1): an insert that bypassed it
        # fails instead of forking the chain.
        op.execute("ALTER TABLE audit ALTER COLUMN id DROP DEFAULT")
        op.execute("DROP SEQUENCE IF EXISTS audit_id_seq")
    op.drop_index("ix_assignments_package", table_name="assignments")
    op.drop_index("ix_assignments_subject_id", table_name="assignments")
    op.create_index("ix_assignments_package_starts", "assignments", ["package", "starts_at"])
    op.create_index("ix_assignments_subject_starts", "assignments", ["subject_id", "starts_at"])
    op.create_index(
        "ix_jobs_grant_resource",
        "jobs",
        ["resource"],
        postgresql_where=sa.text("kind = 'grant'"),
        sqlite_where=sa.text("kind = 'grant'"),
    )


def _backfill() -> None:
    """Chain the records written before this revision, in id order."""
    from policyd.store.types import UTCDateTime

    bind = op.get_bind()
    audit = sa.table(
        "audit",
        sa.column("id", sa.Integer()),
        sa.column("at", UTCDateTime()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("object_type", sa.String()),
        sa.column("object_id", sa.String()),
        sa.column("before", sa.JSON()),
        sa.column("after", sa.JSON()),
        sa.column("version", sa.String()),
        sa.column("request_id", sa.String()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    columns = [audit.c.id, *(audit.c[name] for name in CONTENT)]
    update = (
        sa.update(audit)
        .where(audit.c.id == sa.bindparam("record"))
        .values(prev_hash=sa.bindparam("prev"), hash=sa.bindparam("digest"))
    )
    prev, last = GENESIS, None
    while True:
        query = sa.select(*columns).order_by(audit.c.id).limit(BATCH)
        if last is not None:
            query = query.where(audit.c.id > last)
        rows = bind.execute(query).mappings().all()
        if not rows:
            return
        changes = []
        for row in rows:
            digest = _hash(row, prev)
            changes.append({"record": row["id"], "prev": prev, "digest": digest})
            prev = digest
        bind.execute(update, changes)
        last = rows[-1]["id"]


def downgrade() -> None:
    op.drop_index("ix_jobs_grant_resource", table_name="jobs")
    op.drop_index("ix_assignments_subject_starts", table_name="assignments")
    op.drop_index("ix_assignments_package_starts", table_name="assignments")
    op.create_index("ix_assignments_subject_id", "assignments", ["subject_id"])
    op.create_index("ix_assignments_package", "assignments", ["package"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE IF NOT EXISTS audit_id_seq OWNED BY audit.id")
        op.execute(
            "SELECT setval('audit_id_seq', COALESCE((SELECT max(id) FROM audit), 0) + 1, false)"
        )
        op.execute("ALTER TABLE audit ALTER COLUMN id SET DEFAULT nextval('audit_id_seq')")
    op.drop_column("audit", "hash")
    op.drop_column("audit", "prev_hash")
    op.drop_column("audit", "request_id")
