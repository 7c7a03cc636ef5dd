"""Directory groups and their memberships, one at a time or many with one statement."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from policyd.services.actor import Actor
from policyd.services.audit import audit, audit_many
from policyd.services.auto_assign_queue import mark_dirty
from policyd.services.directory.base import DirectoryPart, check_id
from policyd.services.directory.users import Users
from policyd.services.errors import NotFoundError
from policyd.store.models import Group, Membership
from policyd.store.query import among, insert_many, page

KEEP: Any = object()  # put_group: leave the display name as it is


class Groups(DirectoryPart):
    """The groups part of DirectoryService."""

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

    def get_group(self, group_id: str) -> Group:
        """One group.

        Raises:
            NotFoundError: no such group.
        """
        group = self.session.get(Group, group_id)
        if group is None:
            raise NotFoundError(f"no group {group_id!r}", field="id")
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

    def add_member(self, actor: Actor, group_id: str, user_id: str, *, now: datetime) -> bool:
        """Add `user_id` to `group_id`; False when already a member (nothing audited)."""
        if self.session.get(Group, group_id) is None:
            raise NotFoundError(f"no group {group_id!r}", field="group")
        Users(self.session).get_user(user_id)
        if self.session.get(Membership, (group_id, user_id)) is not None:
            return False
        self.session.add(Membership(group_id=group_id, user_id=user_id))
        mark_dirty(self.session, [user_id], now=now)
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
        mark_dirty(self.session, [user_id], now=now)
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
        mark_dirty(self.session, users, now=now)
        side = "after" if action == "directory.member_added" else "before"
        records = [
            {"action": action, "object": ("group", group_id), side: {"user_id": user}}
            for user in users
        ]
        audit_many(self.session, actor, now, records)
