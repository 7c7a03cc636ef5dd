"""The directory: users, groups and memberships, connected organisations, subject resolution."""

from __future__ import annotations

from policyd.services.directory.base import MAX_ID, check_id
from policyd.services.directory.groups import KEEP, Groups
from policyd.services.directory.organizations import Organizations
from policyd.services.directory.subjects import ACTIVE_STATES, USER_COLUMNS, Subjects
from policyd.services.directory.users import (
    ACTIVE_USER,
    DELETED,
    DISABLED,
    USER_FIELDS,
    Users,
    lock_user,
    user_defaults,
    user_view,
)

__all__ = [
    "ACTIVE_STATES",
    "ACTIVE_USER",
    "DELETED",
    "DISABLED",
    "KEEP",
    "MAX_ID",
    "USER_COLUMNS",
    "USER_FIELDS",
    "DirectoryService",
    "check_id",
    "lock_user",
    "user_defaults",
    "user_view",
]


class DirectoryService(Users, Groups, Organizations, Subjects):
    """Users, groups, memberships and connected organisations over one session, and subject
    resolution; each part lives in its own module of this package."""
