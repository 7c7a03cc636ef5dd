"""SQLAlchemy models: versions, directory, decisions, requests, assignments, audit, tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from policyd.domain import AssignmentState, RequestState
from policyd.store.types import UTCDateTime, new_id

# Partial-index conditions: the rows the lifecycle sweeps look for.
_LIVE = (AssignmentState.DELIVERING, AssignmentState.ACTIVE, AssignmentState.FAILED)
LIVE_CONDITION = f"state IN ({', '.join(repr(state.value) for state in _LIVE)})"
PENDING_CONDITION = f"state = '{RequestState.PENDING_APPROVAL.value}'"
GRANT_CONDITION = "kind = 'grant'"
EXTENDS_CONDITION = "extends_assignment_id IS NOT NULL"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


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


class DecisionRecord(Base):
    """One decision with the full input facts, so it can be replayed under another version."""

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


class SpoolProgress(Base):
    """How far a decision-log spool file is stored: updated in the transaction that inserts
    its entries, so a replay after a crash resumes exactly there (docs/storage.md)."""

    __tablename__ = "spool_progress"

    spool: Mapped[str] = mapped_column(String(100), primary_key=True)  # the file's name
    stored: Mapped[int] = mapped_column(BigInteger)  # bytes of it whose entries are stored


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
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    removed_at: Mapped[datetime | None] = mapped_column()


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


class Job(Base):
    """An outbox entry: one grant or revoke for a connector, written with the state change.

    The worker claims due jobs, runs them with retries and exponential backoff, and marks
    them done or failed; a failed job can be retried by an operator.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_due", "state", "run_at"),
        # The list's order, alone and after its state filter.
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_state_created", "state", "created_at", "id"),
        # The access report's lookup of what a resource was granted through (grants only).
        Index(
            "ix_jobs_grant_resource",
            "resource",
            postgresql_where=text(GRANT_CONDITION),
            sqlite_where=text(GRANT_CONDITION),
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


class ReviewCampaign(Base):
    """One run of a package's access review: opened on its schedule, closed at `ends_at`."""

    __tablename__ = "review_campaigns"
    __table_args__ = (UniqueConstraint("package", "review", "starts_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    package: Mapped[str] = mapped_column(String(64))
    review: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(12))  # the rules that opened it
    state: Mapped[str] = mapped_column(String(20), index=True)  # open | closed
    on_no_response: Mapped[str] = mapped_column(String(20))
    self_review: Mapped[bool] = mapped_column()
    reminders: Mapped[list[Any]] = mapped_column(default=list)  # seconds before the end
    reminded: Mapped[list[Any]] = mapped_column(default=list)  # of those, already sent
    starts_at: Mapped[datetime] = mapped_column()  # the schedule's fire time
    ends_at: Mapped[datetime] = mapped_column(index=True)
    opened_at: Mapped[datetime] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()


class ReviewItem(Base):
    """One assignment under review: the recommendation, the decision and what was applied."""

    __tablename__ = "review_items"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("review_campaigns.id", ondelete="CASCADE"), index=True
    )
    assignment_id: Mapped[str] = mapped_column(String(36))
    subject_id: Mapped[str] = mapped_column(String(200))
    package: Mapped[str] = mapped_column(String(64))
    recommendation: Mapped[str | None] = mapped_column(String(10))  # keep | remove
    recommendation_rule: Mapped[str | None] = mapped_column(String(64))
    recommendation_reason: Mapped[str | None] = mapped_column(Text)
    decision: Mapped[str | None] = mapped_column(String(10))  # keep | remove
    justification: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column()
    result: Mapped[str | None] = mapped_column(String(10))  # kept | removed, once applied
    applied_at: Mapped[datetime | None] = mapped_column()


class ReviewReviewer(Base):
    """Who may decide a review item (resolved when the campaign opens)."""

    __tablename__ = "review_reviewers"

    item_id: Mapped[str] = mapped_column(
        ForeignKey("review_items.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
