"""The audit chain and the API tokens whose holders it names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from policyd.store.models.base import Base
from policyd.store.types import new_id


class AuditRecord(Base):
    """Append-only: who did what to which object, before and after, under which rule version,
    in which HTTP request; each record hashes its content with the previous record's hash
    (services/audit.py, docs/audit.md)."""

    __tablename__ = "audit"
    # The list pages in id order; each filter's index ends with it.
    __table_args__ = (
        Index("ix_audit_action", "action", "id"),
        Index("ix_audit_object_id", "object_id", "id"),
        Index("ix_audit_request_id", "request_id", "id"),
    )

    # Given by the chain's writer (the tail's id + 1), never by a sequence, so that id order
    # is chain order.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    version: Mapped[str | None] = mapped_column(String(12))
    request_id: Mapped[str | None] = mapped_column(String(128))  # X-Request-ID, if any
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    principal: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
