"""The directory as the API changes it: each operation is one transaction, committed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from policyd.services.actor import Actor
from policyd.services.directory import DirectoryService
from policyd.store.models import ConnectedOrganization, Group, User


class DirectoryAdmin(DirectoryService):
    """DirectoryService whose changes commit (DirectoryService's own never do: imports and
    leavers make many changes in one transaction)."""

    def put_user(self, actor: Actor, user_id: str, data: dict[str, Any], **options: Any) -> User:
        user = super().put_user(actor, user_id, data, **options)
        self.session.commit()
        return user

    def put_group(
        self, actor: Actor, group_id: str, display_name: str | None, *, now: datetime
    ) -> Group:
        group = super().put_group(actor, group_id, display_name, now=now)
        self.session.commit()
        return group

    def put_organization(
        self, actor: Actor, org_id: str, data: dict[str, Any], **options: Any
    ) -> ConnectedOrganization:
        org = super().put_organization(actor, org_id, data, **options)
        self.session.commit()
        return org

    def add_member(self, actor: Actor, group_id: str, user_id: str, *, now: datetime) -> bool:
        added = super().add_member(actor, group_id, user_id, now=now)
        self.session.commit()
        return added

    def remove_member(self, actor: Actor, group_id: str, user_id: str, *, now: datetime) -> bool:
        removed = super().remove_member(actor, group_id, user_id, now=now)
        self.session.commit()
        return removed
