"""Users, groups, memberships and connected organisations, and subject resolution."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, literal, select, union_all, update
from sqlalchemy.orm import Session

from policyd.domain import Subject, UserType
from policyd.services.actor import Actor
from policyd.services.audit import audit, audit_many
from policyd.services.errors import ConflictError, InvalidError, NotFoundError
from policyd.store.models import (
    Assignment,
    ConnectedOrganization,
    Group,
    Membership,
    OrganizationDomain,
    User,
)
from policyd.store.query import among, insert_many, page

if TYPE_CHECKING:
    from policyd.services.subject_cache import SubjectCache

USER_FIELDS = (
    "email",
    "display_name",
    "type",
    "manager_id",
    "organization_id",
    "department",
    "job_title",
    "employee_type",
    "attributes",
)
ACTIVE_STATES = ("delivering", "active", "expiring")
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


MAX_ID = 200  # the id columns' length
ACTIVE_USER, DISABLED, DELETED = "active", "disabled", "deleted"  # User.state
KEEP: Any = object()  # put_group: leave the display name as it is


def check_id(value: str, field: str = "id") -> str:
    """Ids are 1 to 200 characters of text every backend stores alike (SQLite would take a
    longer one, or a NUL character PostgreSQL refuses).

    Raises:
        InvalidError: naming `field`.
    """
    if not value or len(value) > MAX_ID:
        raise InvalidError(f"an id has 1 to {MAX_ID} characters", field=field)
    if "\x00" in value:
        raise InvalidError("an id may not contain the NUL character", field=field)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidError("an id must be valid Unicode text", field=field) from None
    return value


def lock_user(session: Session, user_id: str, *, share: bool = False) -> str | None:
    """The user's state (None: no such row), with their row locked until the transaction
    ends: `share` for those who may run side by side (requests), else for update (leavers).

    SQLite locks the whole database at a transaction's first write instead, so there a
    write that changes nothing takes that lock first, and nothing read after it can go
    stale before the commit.
    """
    users = User.__table__
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.execute(update(users).where(users.c.id == user_id).values(state=users.c.state))
        return connection.execute(select(users.c.state).where(users.c.id == user_id)).scalar()
    query = select(User.state).where(User.id == user_id).with_for_update(read=share)
    return session.scalar(query)


def user_view(user: User) -> dict[str, Any]:
    return {"id": user.id, **{name: getattr(user, name) for name in USER_FIELDS}}


class DirectoryService:
    def __init__(self, session: Session | Callable[[], Session]):
        """`session` may be a function that opens one: a decision on a cached subject needs
        none, and opening and closing one costs about 20 µs."""
        self._session = session

    @property
    def session(self) -> Session:
        if not isinstance(self._session, Session):
            self._session = self._session()
        return self._session

    # users -----------------------------------------------------------------------------------
    def get_user(self, user_id: str, *, lock: bool = False) -> User:
        """A user in the directory (a deleted one's tombstone is not)."""
        user = self.session.get(User, user_id, with_for_update=lock or None)
        if user is None or user.state == DELETED:
            raise NotFoundError(f"no user {user_id!r}", field="id")
        return user

    def list_users(self, *, offset: int = 0, limit: int = 100) -> tuple[list[User], int]:
        query = select(User).where(User.state != DELETED).order_by(User.id)
        return page(self.session, query, offset, limit)

    def put_user(
        self,
        actor: Actor,
        user_id: str,
        data: dict[str, Any],
        *,
        now: datetime,
        keep_missing: bool = False,
        external_manager: bool = True,
    ) -> User:
        """Create or replace a user; audited with before and after.

        Args:
            keep_missing: fields absent from `data` keep an existing user's value (the API's
                PUT) instead of being reset (an import replaces the whole record).
            external_manager: False: a `manager_id` must name a user in the directory.

        Raises:
            InvalidError: a bad id, or a manager the directory lacks when it must have them.
        """
        check_id(user_id)
        manager = data.get("manager_id")
        boss = self.session.get(User, manager) if manager and not external_manager else None
        if manager and not external_manager and (boss is None or boss.state == DELETED):
            raise InvalidError(
                f"no user {manager!r} in the directory; send manager_external: true for "
                "a manager outside it",
                field="manager_id",
            )
        user = self.session.get(User, user_id)
        if user is not None and user.state == DELETED:
            # The id is used again: a new user, while the tombstone's history stays.
            user.state, user.left_at = ACTIVE_USER, None
            before = None
        else:
            before = user_view(user) if user else None
        if user is None:
            user = User(id=user_id)
            self.session.add(user)
        for name in USER_FIELDS:
            if name not in data and keep_missing and before is not None:
                continue
            default = {} if name == "attributes" else ("member" if name == "type" else None)
            setattr(user, name, data.get(name, default))
        self.session.flush()
        audit(
            self.session,
            actor,
            "directory.user_updated" if before else "directory.user_created",
            ("user", user_id),
            now=now,
            before=before,
            after=user_view(user),
        )
        return user

    def mark_left(
        self, actor: Actor, user: User, state: str, *, now: datetime, ended: dict[str, int]
    ) -> None:
        """Record that `user` left (`deleted` or `disabled`) once their access is being
        ended (`ended`: what was ended, for the audit record). A deleted user loses their
        memberships and stays as a tombstone: revokes still reach them and history keeps
        who held access. Use LeaverService, which ends the access first."""
        before = user_view(user)
        if state == DELETED:
            self.session.execute(delete(Membership).where(Membership.user_id == user.id))
        user.state, user.left_at = state, now
        audit(
            self.session,
            actor,
            f"directory.user_{state}",
            ("user", user.id),
            now=now,
            before=before,
            after={**user_view(user), "state": state, **ended},
        )

    def enable_user(self, actor: Actor, user: User, *, now: datetime) -> None:
        """A disabled user may request access again (what they had is not given back)."""
        user.state, user.left_at = ACTIVE_USER, None
        audit(
            self.session,
            actor,
            "directory.user_enabled",
            ("user", user.id),
            now=now,
            after=user_view(user),
        )

    # groups ----------------------------------------------------------------------------------
    def put_group(
        self, actor: Actor, group_id: str, display_name: str | None, *, now: datetime
    ) -> Group:
        """Create a group or set its display name (KEEP: leave it); members stay as they are."""
        check_id(group_id)
        group = self.session.get(Group, group_id)
        before = {"display_name": group.display_name} if group else None
        if group is None:
            group = Group(id=group_id)
            self.session.add(group)
        if display_name is not KEEP:
            group.display_name = display_name
        audit(
            self.session,
            actor,
            "directory.group_updated" if before else "directory.group_created",
            ("group", group_id),
            now=now,
            before=before,
            after={"display_name": group.display_name},
        )
        return group

    def members(self, group_id: str, *, offset: int = 0, limit: int = 100) -> tuple[list[str], int]:
        """One page of a group's member ids, in id order."""
        if self.session.get(Group, group_id) is None:
            raise NotFoundError(f"no group {group_id!r}", field="id")
        query = (
            select(Membership.user_id)
            .where(Membership.group_id == group_id)
            .order_by(Membership.user_id)
        )
        return page(self.session, query, offset, limit)

    def list_groups(self, *, offset: int = 0, limit: int = 100) -> tuple[list[Group], int]:
        return page(self.session, select(Group).order_by(Group.id), offset, limit)

    def list_organizations(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[ConnectedOrganization], int]:
        query = select(ConnectedOrganization).order_by(ConnectedOrganization.id)
        return page(self.session, query, offset, limit)

    def add_member(self, actor: Actor, group_id: str, user_id: str, *, now: datetime) -> bool:
        """Add `user_id` to `group_id`; False when already a member (nothing audited)."""
        if self.session.get(Group, group_id) is None:
            raise NotFoundError(f"no group {group_id!r}", field="group")
        self.get_user(user_id)
        if self.session.get(Membership, (group_id, user_id)) is not None:
            return False
        self.session.add(Membership(group_id=group_id, user_id=user_id))
        audit(
            self.session,
            actor,
            "directory.member_added",
            ("group", group_id),
            now=now,
            after={"user_id": user_id},
        )
        return True

    def remove_member(self, actor: Actor, group_id: str, user_id: str, *, now: datetime) -> bool:
        membership = self.session.get(Membership, (group_id, user_id))
        if membership is None:
            return False
        self.session.delete(membership)
        audit(
            self.session,
            actor,
            "directory.member_removed",
            ("group", group_id),
            now=now,
            before={"user_id": user_id},
        )
        return True

    def add_members(
        self, actor: Actor, group_id: str, user_ids: Iterable[str], *, now: datetime
    ) -> list[str]:
        """Add many users to an existing group with one statement; returns who was added
        (those already members are left alone). Every user must exist."""
        wanted = set(user_ids)
        if not wanted:
            return []
        present = set(
            self.session.scalars(
                select(Membership.user_id).where(
                    Membership.group_id == group_id,
                    among(self.session, Membership.user_id, wanted),
                )
            )
        )
        added = sorted(wanted - present)
        if added:
            rows = [{"group_id": group_id, "user_id": user} for user in added]
            insert_many(self.session, Membership, rows)
        self._audit_members(actor, "directory.member_added", group_id, added, now=now)
        return added

    def remove_members(
        self, actor: Actor, group_id: str, user_ids: Iterable[str], *, now: datetime
    ) -> list[str]:
        """Remove many users from a group with one statement; returns who was removed."""
        wanted = set(user_ids)
        if not wanted:
            return []
        removed = sorted(
            self.session.scalars(
                delete(Membership)
                .where(Membership.group_id == group_id)
                .where(among(self.session, Membership.user_id, wanted))
                .returning(Membership.user_id),
                execution_options={"synchronize_session": False},
            )
        )
        self._audit_members(actor, "directory.member_removed", group_id, removed, now=now)
        return removed

    def _audit_members(
        self, actor: Actor, action: str, group_id: str, users: list[str], *, now: datetime
    ) -> None:
        """One audit record per user, as add_member and remove_member write them."""
        side = "after" if action == "directory.member_added" else "before"
        records = [
            {"action": action, "object": ("group", group_id), side: {"user_id": user}}
            for user in users
        ]
        audit_many(self.session, actor, now, records)

    # connected organisations -----------------------------------------------------------------
    def put_organization(
        self,
        actor: Actor,
        org_id: str,
        data: dict[str, Any],
        *,
        now: datetime,
        keep_missing: bool = False,
    ) -> ConnectedOrganization:
        """Create or replace a connected organisation; with `keep_missing`, fields absent
        from `data` keep an existing organisation's value."""
        check_id(org_id)
        org = self.session.get(ConnectedOrganization, org_id)
        fields = ("display_name", "domains", "internal_sponsors", "external_sponsors", "state")
        before = {f: getattr(org, f) for f in fields} if org else None
        if org is None:
            org = ConnectedOrganization(id=org_id)
            self.session.add(org)
        elif keep_missing:
            data = {**before, **data}
        org.display_name = data.get("display_name", org_id)
        org.domains = sorted({d.strip().lower() for d in data.get("domains", []) if d.strip()})
        self._claim_domains(org_id, org.domains)
        org.internal_sponsors = list(data.get("internal_sponsors", []))
        org.external_sponsors = list(data.get("external_sponsors", []))
        org.state = data.get("state", "configured")
        audit(
            self.session,
            actor,
            "directory.organization_updated" if before else "directory.organization_created",
            ("organization", org_id),
            now=now,
            before=before,
            after={f: getattr(org, f) for f in fields},
        )
        return org

    def _claim_domains(self, org_id: str, domains: list[str]) -> None:
        taken = self.session.scalars(
            select(OrganizationDomain).where(
                OrganizationDomain.domain.in_(domains),
                OrganizationDomain.organization_id != org_id,
            )
        ).first()
        if taken is not None:
            raise ConflictError(
                f"domain {taken.domain!r} belongs to organization {taken.organization_id!r}",
                field="domains",
            )
        self.session.execute(
            delete(OrganizationDomain).where(OrganizationDomain.organization_id == org_id)
        )
        self.session.flush()
        self.session.add_all(OrganizationDomain(domain=d, organization_id=org_id) for d in domains)

    def organization_for(self, subject: Subject) -> ConnectedOrganization | None:
        """The subject's connected organisation: set on the user, or owning their domain."""
        org_id = subject.organization
        if not org_id and subject.domain:
            org_id = self.session.scalar(
                select(OrganizationDomain.organization_id).where(
                    OrganizationDomain.domain == subject.domain
                )
            )
        return self.session.get(ConnectedOrganization, org_id) if org_id else None

    # subjects --------------------------------------------------------------------------------
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
