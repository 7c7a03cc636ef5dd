"""SQLAlchemy models: versions, directory, decisions, requests, assignments, audit, tokens,
jobs and reviews, one module per area; every model is importable from here, and importing
this package registers every table on `Base.metadata` (Alembic reads it)."""

from __future__ import annotations

from policyd.store.models.access import AccessRequest, Approval, Assignment, StageApprover
from policyd.store.models.audit import ApiToken, AuditRecord
from policyd.store.models.base import Base
from policyd.store.models.decision import DecisionRecord, SpoolProgress
from policyd.store.models.directory import (
    AutoAssignQueue,
    ConnectedOrganization,
    Group,
    Membership,
    OrganizationDomain,
    User,
)
from policyd.store.models.job import Job
from policyd.store.models.policy import PolicyPublication, PolicyVersion, Setting
from policyd.store.models.review import ReviewCampaign, ReviewItem, ReviewReviewer

__all__ = [
    "AccessRequest",
    "ApiToken",
    "Approval",
    "Assignment",
    "AuditRecord",
    "AutoAssignQueue",
    "Base",
    "ConnectedOrganization",
    "DecisionRecord",
    "Group",
    "Job",
    "Membership",
    "OrganizationDomain",
    "PolicyPublication",
    "PolicyVersion",
    "ReviewCampaign",
    "ReviewItem",
    "ReviewReviewer",
    "Setting",
    "SpoolProgress",
    "StageApprover",
    "User",
]
