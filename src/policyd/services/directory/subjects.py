"""Subject resolution: a user as the rules see it, from the directory and a trusted overlay."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, literal, select, union_all

from policyd.domain import AssignmentState, Subject, UserType
from policyd.services.directory.base import DirectoryPart
from policyd.services.directory.users import DELETED
from policyd.services.errors import InvalidError, NotFoundError
from policyd.store.models import Assignment, Membership, OrganizationDomain, User

if TYPE_CHECKING:
    from policyd.services.subject_cache import SubjectCache

ACTIVE_STATES = (AssignmentState.DELIVERING, AssignmentState.ACTIVE, AssignmentState.EXPIRING)
USER_COLUMNS = (
    User.id,
    User.email,
    User.type,
    User.manager_id,
    User.organization_id,
    User.department,
    User.job_title,
    User.employee_type,
    User.attributes,
)


class Subjects(DirectoryPart):
    """The subject resolution part of DirectoryService."""

    def resolve_subject(
        self,
        subject_id: str,
        supplied: Subject | None = None,
        *,
        trusted: bool = False,
        cache: SubjectCache | None = None,
    ) -> Subject:
        """The subject as the rules see it: directory data, merged with what the caller gave.

        A trusted caller's supplied values override the directory field by field and may
        describe a subject the directory lacks; anyone else's supplied values are ignored.
        With a `cache`, the directory's part may be up to its ttl old (decisions only); a
        caller's overlay is never cached.

        Raises:
            NotFoundError: the directory has no such user and the caller is not trusted.
            InvalidError: the id is not valid Unicode text (a lone surrogate).
        """
        subject = cache.get(subject_id) if cache is not None else None
        if subject is None:
            generation = cache.generation if cache is not None else 0
            subject = self._directory_subject(subject_id)
            if subject is None:
                if trusted and supplied is not None:
                    return supplied
                raise NotFoundError(f"no user {subject_id!r} in the directory", field="subject.id")
            if cache is not None:
                cache.put(subject_id, subject, generation)
        if trusted and supplied is not None:
            subject = _overlay(subject, supplied)
        return subject

    def _directory_subject(self, subject_id: str) -> Subject | None:
        if not subject_id.isascii():
            try:
                subject_id.encode()
            except UnicodeEncodeError:
                # No database driver can send it, so no stored user can have it.
                raise InvalidError("the id is not valid Unicode text", field="subject.id") from None
        connection = self.session.connection()  # Core statements: skip the ORM layer
        user = connection.execute(_USER_ROW, {"uid": subject_id}).one_or_none()
        if user is None:
            return None
        domain = user.email.rsplit("@", 1)[-1].strip().lower() if user.email else ""
        related = connection.execute(_RELATED, {"uid": subject_id, "domain": domain}).all()
        try:
            user_type = UserType(user.type)
        except ValueError:
            raise InvalidError(f"user {user.id!r} has type {user.type!r}", field="type") from None
        by_domain = next((value for kind, value in related if kind == "o"), None)
        return Subject(
            id=user.id,
            email=user.email,
            type=user_type,
            groups=frozenset(value for kind, value in related if kind == "g"),
            manager=user.manager_id,
            organization=user.organization_id or by_domain,
            packages=frozenset(value for kind, value in related if kind == "p"),
            department=user.department,
            job_title=user.job_title,
            employee_type=user.employee_type,
            attributes=dict(user.attributes or {}),
        )


# Built once: constructing these per call cost more than running them (decisions' hot path).
_USER_ROW = select(*USER_COLUMNS).where(User.id == bindparam("uid"), User.state != DELETED)
_RELATED = union_all(
    select(literal("g"), Membership.group_id).where(Membership.user_id == bindparam("uid")),
    select(literal("p"), Assignment.package).where(
        Assignment.subject_id == bindparam("uid"), Assignment.state.in_(ACTIVE_STATES)
    ),
    select(literal("o"), OrganizationDomain.organization_id).where(
        OrganizationDomain.domain == bindparam("domain")
    ),
)


def _overlay(base: Subject, supplied: Subject) -> Subject:
    """Fields the caller gave win; empty sets and None leave the directory's value."""
    changes: dict[str, Any] = {}
    for name in ("email", "manager", "organization", "department", "job_title", "employee_type"):
        value = getattr(supplied, name)
        if value is not None:
            changes[name] = value
    if supplied.type is not UserType.MEMBER:
        changes["type"] = supplied.type
    if supplied.groups:
        changes["groups"] = base.groups | supplied.groups
    if supplied.attributes:
        changes["attributes"] = {**base.attributes, **supplied.attributes}
    return replace(base, **changes) if changes else base
