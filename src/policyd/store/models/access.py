"""Access requests with their approvals, and the assignments they grant."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from policyd.domain import AssignmentState, RequestState
from policyd.store.models.base import Base
from policyd.store.types import new_id

# Partial-index conditions: the requests the lifecycle sweeps look for.
PENDING_CONDITION = f"state = '{RequestState.PENDING_APPROVAL.value}'"
EXTENDS_CONDITION = "extends_assignment_id IS NOT NULL"

# Partial-index condition: the live assignments the expiry sweep looks for.
_LIVE = (AssignmentState.DELIVERING, AssignmentState.ACTIVE, AssignmentState.FAILED)
LIVE_CONDITION = f"state IN ({', '.join(repr(state.value) for state in _LIVE)})"


class AccessRequest(Base):
    __tablename__ = "requests"
    __table_args__ = (
        UniqueConstraint("principal", "idempotency_key"),
        # The approval-timeout sweep's scan: only requests that wait for an approver.
        Index(
            "ix_requests_stage_due",
            "stage_due_at",
            postgresql_where=text(PENDING_CONDITION),
            sqlite_where=text(PENDING_CONDITION),
        ),
        # The list's order (newest first) and its filters, each ending with that order.
        Index("ix_requests_created", "created_at", "id"),
        Index("ix_requests_state", "state", "created_at", "id"),
        Index("ix_requests_subject_id", "subject_id", "created_at", "id"),
        # The access report's lookup of an assignment's extensions (few requests extend one).
        Index(
            "ix_requests_extends",
            "extends_assignment_id",
            postgresql_where=text(EXTENDS_CONDITION),
            sqlite_where=text(EXTENDS_CONDITION),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    package: Mapped[str] = mapped_column(String(64), index=True)
    subject_id: Mapped[str] = mapped_column(String(200))
    principal: Mapped[str] = mapped_column(String(200))  # who filed it (self or an app)
    state: Mapped[str] = mapped_column(String(30))
    stage: Mapped[int | None] = mapped_column(Integer)  # 1-based while pending_approval
    stages: Mapped[list[Any]] = mapped_column(default=list)  # resolved approvers per stage
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"), index=True)
    version: Mapped[str] = mapped_column(String(12))
    rule: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    justification: Mapped[str | None] = mapped_column(Text)
    requested_duration: Mapped[str | None] = mapped_column(String(40))
    expires_at: Mapped[datetime | None] = mapped_column()  # of the access, once granted
    # How the lifetime counts from the grant, and why (clamps included): see lifetime_terms
    lifetime: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    answers: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # to the package's questions
    stage_due_at: Mapped[datetime | None] = mapped_column()  # the current stage times out
    extends_assignment_id: Mapped[str | None] = mapped_column(String(36))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()

    approvals: Mapped[list[Approval]] = relationship(
        back_populates="request", order_by="Approval.stage", lazy="selectin"
    )


class StageApprover(Base):
    """Who may decide the current stage of a waiting request: the approver inbox's index.

    The request's `stages` JSON keeps the full history; these rows mirror only the approvers
    of the stage now waiting, and go when the request stops waiting.
    """

    __tablename__ = "stage_approvers"

    request_id: Mapped[str] = mapped_column(
        ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)


class Approval(Base):
    """An approver's verdict on one stage; one per stage, so a second one cannot be stored."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("request_id", "stage"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    stage: Mapped[int] = mapped_column(Integer)
    approver: Mapped[str] = mapped_column(String(200))
    verdict: Mapped[str] = mapped_column(String(10))  # approve | deny
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column()

    request: Mapped[AccessRequest] = relationship(back_populates="approvals")


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (
        # The expiry sweep's scan: only live access, so ended assignments (most rows, after
        # a while) are never walked again.
        Index(
            "ix_assignments_live_expiry",
            "expires_at",
            postgresql_where=text(LIVE_CONDITION),
            sqlite_where=text(LIVE_CONDITION),
        ),
        # Who held a package (or what a person held) at a time: the access report reads
        # these up to that time; their first column serves every lookup by package or person.
        # Ending with (starts_at, id), they also serve the list's pages (read backwards).
        Index("ix_assignments_package_starts", "package", "starts_at", "id"),
        Index("ix_assignments_subject_starts", "subject_id", "starts_at", "id"),
        Index("ix_assignments_starts", "starts_at", "id"),
        Index("ix_assignments_state", "state", "starts_at", "id"),
        # The list filtered by expiring_before pages in (expires_at, id) order, read backwards
        # from the bound: every state, as the filter keeps ended assignments too.
        Index("ix_assignments_expires", "expires_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    subject_id: Mapped[str] = mapped_column(String(200))
    package: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"))
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.id"), index=True)
    version: Mapped[str] = mapped_column(String(12))
    rule: Mapped[str | None] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    removed_at: Mapped[datetime | None] = mapped_column()
    # request | direct | auto: how it came to be (auto: policyd.services.auto_assignment)
    origin: Mapped[str] = mapped_column(String(10), default="request", server_default="request")
