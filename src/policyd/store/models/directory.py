"""The directory: connected organisations and their domains, users, groups and memberships."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from policyd.store.models.base import Base


class ConnectedOrganization(Base):
    __tablename__ = "connected_organizations"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    domains: Mapped[list[Any]] = mapped_column(default=list)
    internal_sponsors: Mapped[list[Any]] = mapped_column(default=list)
    external_sponsors: Mapped[list[Any]] = mapped_column(default=list)
    state: Mapped[str] = mapped_column(String(20), default="configured")


class OrganizationDomain(Base):
    """Which connected organisation an email domain belongs to (one owner per domain)."""

    __tablename__ = "organization_domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("connected_organizations.id", ondelete="CASCADE"), index=True
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(10), default="member")
    manager_id: Mapped[str | None] = mapped_column(String(200))
    organization_id: Mapped[str | None] = mapped_column(String(200))
    department: Mapped[str | None] = mapped_column(String(200))
    job_title: Mapped[str | None] = mapped_column(String(200))
    employee_type: Mapped[str | None] = mapped_column(String(100))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # active | disabled | deleted: a deleted user is a tombstone (docs/lifecycle.md#leavers)
    state: Mapped[str] = mapped_column(String(10), default="active", server_default="active")
    left_at: Mapped[datetime | None] = mapped_column()  # when they were deleted or disabled


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))


class Membership(Base):
    __tablename__ = "memberships"
    # The key starts with the group; a person's groups (every uncached decision) need this.
    __table_args__ = (Index("ix_memberships_user_id", "user_id"),)

    group_id: Mapped[str] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class AutoAssignQueue(Base):
    """A user whose directory data changed since auto-assignment last looked at them.

    Marking is an upsert (cheap, in the caller's transaction); the worker evaluates marked
    users in batches and deletes a mark only if it is the one it read (`generation`), so a
    change made meanwhile is evaluated again."""

    __tablename__ = "auto_assign_queue"

    subject_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    marked_at: Mapped[datetime] = mapped_column(index=True)
