"""The outbox of connector work (grants, revokes, notifications)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from policyd.store.models.base import Base
from policyd.store.types import new_id

# Partial-index condition: the grant jobs revocation looks for.
GRANT_CONDITION = "kind = 'grant'"
QUEUED_CONDITION = "state = 'queued'"


class Job(Base):
    """An outbox entry: one grant or revoke for a connector, written with the state change.

    The worker claims due jobs, runs them with retries and exponential backoff, and marks
    them done or failed; a failed job can be retried by an operator.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_due", "state", "run_at"),
        # Due jobs of one kind (notifications done at once when no notifier is configured):
        # without it that scan walks every queued job of the other kinds, such as the
        # revokes a mass expiry queued, once per batch.
        Index(
            "ix_jobs_queued_kind",
            "kind",
            "run_at",
            postgresql_where=text(QUEUED_CONDITION),
            sqlite_where=text(QUEUED_CONDITION),
        ),
        # The list's order, alone and after its state filter.
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_state_created", "state", "created_at", "id"),
        # The access report's lookup of what a resource was granted through (grants only),
        # and reconcile's page of grants, read from the index alone on PostgreSQL.
        Index(
            "ix_jobs_grant_resource",
            "resource",
            postgresql_where=text(GRANT_CONDITION),
            sqlite_where=text(GRANT_CONDITION),
            postgresql_include=["connector", "role", "subject_id", "assignment_id", "state"],
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(
        String(20)
    )  # grant | revoke | notify | event | send | disable_user | delete_user
    connector: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(100))
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    assignment_id: Mapped[str | None] = mapped_column(String(36), index=True)
    state: Mapped[str] = mapped_column(String(20))  # a policyd.domain.JobState
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime] = mapped_column()
    locked_until: Mapped[datetime | None] = mapped_column()
    locked_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # an event's own fields
