"""Decision records and how far the decision-log spool has been read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Index,
    String,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from policyd.store.models.base import Base
from policyd.store.types import new_id


class DecisionRecord(Base):
    """One decision with the full input facts, so it can be replayed under another version.

    On PostgreSQL the table is partitioned (migration 0022, `policyd.store.partitions`): by
    `kept`, then the entries nothing refers to by month of `at`, so that retention drops
    whole months. Its key there is (id, kept, at), as a partitioned table's key must hold the
    partition keys; ids are unique all the same, as `new_id` makes them.
    """

    __tablename__ = "decisions"
    # Each list filter's index ends with the list's order (at, id) so that a page is a range
    # scan, read backwards for newest first; `at` alone also serves the retention's deletes.
    __table_args__ = (
        Index("ix_decisions_at", "at", "id"),
        Index("ix_decisions_subject_at", "subject_id", "at", "id"),
        Index("ix_decisions_package", "package", "at", "id"),
        Index("ix_decisions_version", "version", "at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column()
    package: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(20))
    rule: Mapped[str | None] = mapped_column(String(200))
    matched: Mapped[list[Any]] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(12))
    input: Mapped[dict[str, Any]] = mapped_column()  # subject, request, now as evaluated
    result: Mapped[dict[str, Any]] = mapped_column()  # Decision.to_dict()
    principal: Mapped[str] = mapped_column(String(200))
    # A request or assignment refers to the entry: set in the transaction that writes the
    # entry with its reference, never cleared; retention never deletes a kept entry.
    kept: Mapped[bool] = mapped_column(default=False, server_default=false())


class SpoolProgress(Base):
    """How far a decision-log spool file is stored: updated in the transaction that inserts
    its entries, so a replay after a crash resumes exactly there (docs/storage.md)."""

    __tablename__ = "spool_progress"

    spool: Mapped[str] = mapped_column(String(100), primary_key=True)  # the file's name
    stored: Mapped[int] = mapped_column(BigInteger)  # bytes of it whose entries are stored
