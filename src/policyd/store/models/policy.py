"""Published policy versions, publications waiting for a worker, and process-wide settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Index,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from policyd.store.models.base import Base
from policyd.store.types import new_id


class PolicyVersion(Base):
    """An immutable published bundle: every file's text, its hash and where it came from."""

    __tablename__ = "policy_versions"

    id: Mapped[str] = mapped_column(String(12), primary_key=True)  # content hash prefix
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    files: Mapped[dict[str, Any]] = mapped_column()  # relative path -> text
    git_commit: Mapped[str | None] = mapped_column(String(64))
    # Whether the policies folder had uncommitted changes at publication; None: not known
    # (published through the API, or not from a git work tree).
    git_dirty: Mapped[bool | None] = mapped_column()
    author: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column()
    packages: Mapped[list[Any]] = mapped_column()  # package ids, for listing
    # The validated bundle in policyd.rules.packed's form, written once at publication; a
    # process loads this instead of parsing and validating the files again. Deferred: the
    # version list and most reads never need it.
    packed: Mapped[str | None] = mapped_column(Text, deferred=True)


class PolicyPublication(Base):
    """A bundle accepted over the API; a worker validates, stores and activates it (or rejects
    it with every problem) and the caller polls its state."""

    __tablename__ = "policy_publications"
    __table_args__ = (Index("ix_policy_publications_state", "state", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    state: Mapped[str] = mapped_column(String(16))  # PublicationState
    files: Mapped[dict[str, Any] | None] = mapped_column()  # dropped once handled
    message: Mapped[str] = mapped_column(Text, default="")
    git_commit: Mapped[str | None] = mapped_column(String(64))
    # Connector instance -> type, as the accepting process had them configured.
    connectors: Mapped[dict[str, Any] | None] = mapped_column()
    author: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()
    version_id: Mapped[str | None] = mapped_column(String(12))
    errors: Mapped[list[Any] | None] = mapped_column()  # file:line problems when rejected


class Setting(Base):
    """Small process-wide state; `active_version` is polled by every process."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column()
