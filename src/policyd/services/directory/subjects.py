"""Subject resolution: a user as the rules see it, from the directory and a trusted overlay."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, literal, select, union_all

from policyd.domain import AssignmentState, Subject, UserType
from policyd.services.directory.base import DirectoryPart
from policyd.services.directory.users import DELETED
from policyd.services.errors import InvalidError, NotFoundError
from policyd.store.models import Assignment, Membership, OrganizationDomain, User
from policyd.store.prepared import PreparedRead, read_connection

if TYPE_CHECKING:
    from policyd.services.subject_cache import SubjectCache

log = logging.getLogger(__name__)
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
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> Subject:
        """The subject as the rules see it: directory data, merged with what the caller gave.

        A trusted caller's supplied values override the directory field by field and may
        describe a subject the directory lacks; anyone else's supplied values are ignored.
        With a `cache`, the directory's part may be up to its ttl old (decisions only); a
        caller's overlay is never cached. With `defer` too, an entry due for a refresh is read
        again by the work handed to it (a request's, once its answer is sent).

        Raises:
            NotFoundError: the directory has no such user and the caller is not trusted.
            InvalidError: the id is not valid Unicode text (a lone surrogate).
        """
        subject, due = cache.lookup(subject_id) if cache is not None else (None, False)
        if due and cache is not None:
            if defer is None:
                cache.refresh_failed(subject_id)
            else:
                defer(partial(_refresh, self.session.get_bind(), subject_id, cache))
        if subject is None:
            generation = cache.generation if cache is not None else 0
            if cache is None:
                subject = _directory_subject(subject_id, self.session.connection())
            else:
                # A decision may use a subject up to the cache's ttl old: read as committed,
                # outside the session's transaction, which would cost more than the read.
                with read_connection(self.session) as connection:
                    subject = _directory_subject(subject_id, connection)
            if subject is None:
                if trusted and supplied is not None:
                    return supplied
                raise NotFoundError(f"no user {subject_id!r} in the directory", field="subject.id")
            if cache is not None:
                cache.put(subject_id, subject, generation)
        if trusted and supplied is not None:
            subject = _overlay(subject, supplied)
        return subject


def _directory_subject(subject_id: str, connection: Connection) -> Subject | None:
    if not subject_id.isascii():
        try:
            subject_id.encode()
        except UnicodeEncodeError:
            # No database driver can send it, so no stored user can have it.
            raise InvalidError("the id is not valid Unicode text", field="subject.id") from None
    user = _USER_ROW.first(connection, {"uid": subject_id})
    if user is None:
        return None
    uid, email, kind, manager, organization, department, title, employee, attributes = user
    domain = email.rsplit("@", 1)[-1].strip().lower() if email else ""
    related = _RELATED.rows(connection, {"uid": subject_id, "domain": domain})
    try:
        user_type = UserType(kind)
    except ValueError:
        raise InvalidError(f"user {uid!r} has type {kind!r}", field="type") from None
    by_domain = next((value for kind, value in related if kind == "o"), None)
    return Subject(
        id=uid,
        email=email,
        type=user_type,
        groups=frozenset(value for kind, value in related if kind == "g"),
        manager=manager,
        organization=organization or by_domain,
        packages=frozenset(value for kind, value in related if kind == "p"),
        department=department,
        job_title=title,
        employee_type=employee,
        attributes=dict(attributes or {}),
    )


def _refresh(bind: Engine | Connection, subject_id: str, cache: SubjectCache) -> None:
    """Read a cached subject again and put it back (a decision's deferred work)."""
    generation = cache.generation
    try:
        with read_connection(bind) as connection:
            subject = _directory_subject(subject_id, connection)
    except Exception:
        cache.refresh_failed(subject_id)
        log.warning("subject cache: refreshing %r failed", subject_id, exc_info=True)
        return
    if subject is None:
        cache.forget(subject_id)  # gone: the next decision reads the directory and says so
        return
    cache.put(subject_id, subject, generation)


# Built and compiled once, run on the driver's cursor: a subject missed in the decisions'
# cache is read in the middle of a request, and SQLAlchemy's execution cost more than these
# indexed look-ups (store/prepared.py).
_USER_ROW = PreparedRead(
    select(*USER_COLUMNS).where(User.id == bindparam("uid"), User.state != DELETED)
)
_RELATED = PreparedRead(
    union_all(
        select(literal("g"), Membership.group_id).where(Membership.user_id == bindparam("uid")),
        select(literal("p"), Assignment.package).where(
            Assignment.subject_id == bindparam("uid"),
            # One parameter each: PreparedRead takes no expanding IN.
            Assignment.state.in_(
                [bindparam(f"active_{n}", state) for n, state in enumerate(ACTIVE_STATES)]
            ),
        ),
        select(literal("o"), OrganizationDomain.organization_id).where(
            OrganizationDomain.domain == bindparam("domain")
        ),
    )
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
