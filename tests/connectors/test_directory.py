"""The built-in directory connector, one by one and in bulk, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from policyd.connectors.base import ConnectorContext, ConnectorError, Target
from policyd.connectors.directory import DirectoryConnector
from policyd.services.actor import SYSTEM
from policyd.services.directory import DirectoryService
from policyd.services.memberships import DirectoryMemberships
from policyd.store import Database
from policyd.store.models import AuditRecord, Membership
from policyd.testing import check_connector_contract

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def directory(store: Database) -> DirectoryConnector:
    with store.session() as session:
        people = DirectoryService(session)
        for user in ("ada", "bob", "cy"):
            people.put_user(SYSTEM, user, {"email": f"{user}@contoso.com"}, now=NOW)
        session.commit()
    return DirectoryConnector(
        ConnectorContext("directory", memberships=DirectoryMemberships(store.session))
    )


def members(store: Database, group: str) -> set[str]:
    with store.session() as session:
        query = select(Membership.user_id).where(Membership.group_id == group)
        return set(session.scalars(query))


def audited(store: Database, action: str) -> list[tuple[str, dict]]:
    with store.session() as session:
        query = select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.id)
        return [
            (record.object_id, record.before or record.after) for record in session.scalars(query)
        ]


def test_the_directory_keeps_the_connector_contract(directory):
    """One by one and in bulk, grant and revoke are idempotent and show in members()."""
    check_connector_contract(directory, Target("ada", "group:Readers"))


def test_grant_many_creates_the_group_and_adds_only_who_is_missing(store, directory):
    """One call adds every new member, once, and says which targets it could not grant."""
    targets = [
        Target("ada", "group:Readers"),
        Target("bob", "group:Readers"),
        Target("ada", "group:Readers"),  # the same grant twice in one call
        Target("zed", "group:Readers"),  # not in the directory
        Target("cy", "role:Readers"),  # not a directory resource
        Target("cy", "group:Writers"),
    ]
    errors = directory.grant_many(targets)
    assert [error is None for error in errors] == [True, True, True, False, False, True]
    assert all(not error.retryable for error in errors if error is not None)
    assert "no user 'zed'" in str(errors[3]) and "group:<id>" in str(errors[4])
    assert members(store, "Readers") == {"ada", "bob"}
    assert members(store, "Writers") == {"cy"}
    assert directory.grant_many(targets[:2]) == [None, None]  # already members: no error
    added = audited(store, "directory.member_added")
    assert sorted((group, change["user_id"]) for group, change in added) == [
        ("Readers", "ada"),
        ("Readers", "bob"),
        ("Writers", "cy"),
    ]


def test_revoke_many_removes_members_and_audits_only_real_removals(store, directory):
    """Revoking someone who is not a member is no error and leaves no audit record."""
    directory.grant_many([Target("ada", "group:Readers"), Target("bob", "group:Readers")])
    errors = directory.revoke_many(
        [
            Target("ada", "group:Readers"),
            Target("cy", "group:Readers"),  # never a member
            Target("bob", "group:Absent"),  # no such group
            Target("bob", "Readers"),  # malformed
        ]
    )
    assert errors[:3] == [None, None, None]
    assert isinstance(errors[3], ConnectorError) and not errors[3].retryable
    assert members(store, "Readers") == {"bob"}
    assert audited(store, "directory.member_removed") == [("Readers", {"user_id": "ada"})]


def test_bulk_and_single_calls_agree(store, directory):
    """grant_many and revoke_many leave the same memberships as grant and revoke would."""
    people = [Target(user, "group:Mixed") for user in ("ada", "bob", "cy")]
    directory.grant(people[0])
    assert directory.grant_many(people) == [None, None, None]
    assert directory.members("group:Mixed") == {"ada", "bob", "cy"}
    directory.revoke(people[1])
    assert directory.revoke_many(people) == [None, None, None]
    assert directory.members("group:Mixed") == set()


def test_members_of_lists_many_groups_at_once(directory):
    """members_of gives each group's holders (an empty set for a group nobody holds) and
    leaves out what is no directory group, for `members` to name the problem."""
    granted = [("ada", "group:A"), ("bob", "group:A"), ("cy", "group:B")]
    directory.grant_many([Target(user, group) for user, group in granted])
    assert directory.members_of(["group:A", "group:B", "group:C", "role:A", "group:"]) == {
        "group:A": {"ada", "bob"},
        "group:B": {"cy"},
        "group:C": set(),
    }
