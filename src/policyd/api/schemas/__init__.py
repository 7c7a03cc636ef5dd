"""Marshmallow schemas of the HTTP API (the OpenAPI document is generated from them), one
module per resource; the views import every schema from here."""

from __future__ import annotations

from policyd.api.schemas.admin import (
    AuditOutSchema,
    AuditQuerySchema,
    TokenInSchema,
    TokenOutSchema,
)
from policyd.api.schemas.assignments import (
    ASSIGNMENT_STATES,
    AssignmentOutSchema,
    AssignmentQuerySchema,
    DirectAssignmentInSchema,
    ExtendInSchema,
)
from policyd.api.schemas.base import Cursor, Strict, UtcDateTime
from policyd.api.schemas.decisions import (
    ApprovalOutSchema,
    DecisionInSchema,
    DecisionOutSchema,
    DecisionQuerySchema,
    DecisionRecordSchema,
    LifetimeOutSchema,
    StageOutSchema,
    TemplateOriginSchema,
)
from policyd.api.schemas.directory import (
    MAX_SPONSORS,
    GroupSchema,
    MemberSchema,
    OrganizationQuerySchema,
    OrganizationRemovedSchema,
    OrganizationSchema,
    UserQuerySchema,
    UserSchema,
)
from policyd.api.schemas.jobs import JOB_STATES, JobOutSchema, JobQuerySchema
from policyd.api.schemas.requests import (
    REQUEST_STATES,
    ApprovalRecordSchema,
    QuestionOutSchema,
    QuestionQuerySchema,
    RequestInSchema,
    RequestLifetimeSchema,
    RequestOutSchema,
    RequestQuerySchema,
    StageStateSchema,
    VerdictInSchema,
)
from policyd.api.schemas.versions import (
    MAX_FILES,
    MAX_PATH,
    PublishInSchema,
    VersionDetailSchema,
    VersionOutSchema,
)

__all__ = [
    "ASSIGNMENT_STATES",
    "JOB_STATES",
    "MAX_FILES",
    "MAX_PATH",
    "MAX_SPONSORS",
    "REQUEST_STATES",
    "ApprovalOutSchema",
    "ApprovalRecordSchema",
    "AssignmentOutSchema",
    "AssignmentQuerySchema",
    "AuditOutSchema",
    "AuditQuerySchema",
    "Cursor",
    "DecisionInSchema",
    "DecisionOutSchema",
    "DecisionQuerySchema",
    "DecisionRecordSchema",
    "DirectAssignmentInSchema",
    "ExtendInSchema",
    "GroupSchema",
    "JobOutSchema",
    "JobQuerySchema",
    "LifetimeOutSchema",
    "MemberSchema",
    "OrganizationQuerySchema",
    "OrganizationRemovedSchema",
    "OrganizationSchema",
    "PublishInSchema",
    "QuestionOutSchema",
    "QuestionQuerySchema",
    "RequestInSchema",
    "RequestLifetimeSchema",
    "RequestOutSchema",
    "RequestQuerySchema",
    "StageOutSchema",
    "StageStateSchema",
    "Strict",
    "TemplateOriginSchema",
    "TokenInSchema",
    "TokenOutSchema",
    "UserQuerySchema",
    "UserSchema",
    "UtcDateTime",
    "VerdictInSchema",
    "VersionDetailSchema",
    "VersionOutSchema",
]
