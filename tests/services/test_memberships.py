"""The `directory` connector's store: memberships of policyd's own directory, one
transaction a call, idempotent."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.services.memberships import ACTOR, DirectoryMemberships
from policyd.store.models import AuditRecord, Group


@pytest.fixture
def memberships(session, people) -> DirectoryMemberships:
    """The store, each of its sessions joining the test's transaction."""

    def sessions() -> Session:
        return Session(
            bind=session.connection(),
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
        )

    return DirectoryMemberships(sessions)


def audited(session, action: str) -> list[tuple[str, str]]:
    query = select(AuditRecord.actor, AuditRecord.object_id).where(AuditRecord.action == action)
    return sorted(tuple(row) for row in session.execute(query))


def test_known_users_are_those_the_directory_holds(memberships):
    assert memberships.known_users(["ada", "ghost", "bob"]) == {"ada", "bob"}
    assert memberships.known_users([]) == set()


def test_adding_creates_the_group_and_audits_each_member(session, memberships):
    """A new group is made for the first grant; each member added is audited as the
    connector."""
    memberships.add("Tools", ["ada", "bob"])
    assert memberships.members("Tools") == {"ada", "bob"}
    assert session.get(Group, "Tools") is not None
    tools = [row for row in audited(session, "directory.member_added") if row[1] == "Tools"]
    assert tools == [(ACTOR.principal, "Tools")] * 2


def test_adding_members_again_changes_nothing(session, memberships):
    """A second add of the same people is idempotent: no error, no new audit record."""
    memberships.add("Tools", ["ada"])
    before = len(audited(session, "directory.member_added"))
    memberships.add("Tools", ["ada"])
    assert memberships.members("Tools") == {"ada"}
    assert len(audited(session, "directory.member_added")) == before


def test_add_one_refuses_an_unknown_user_and_is_idempotent(memberships):
    """add_one is False for someone the directory lacks; True, twice, for a known one."""
    assert memberships.add_one("Tools", "ghost") is False
    assert memberships.add_one("Tools", "carol") is True
    assert memberships.add_one("Tools", "carol") is True
    assert memberships.members("Tools") == {"carol"}


def test_removing_ends_each_groups_listed_members(memberships):
    """remove takes the listed people out of each group, leaving the others."""
    memberships.add("Tools", ["ada", "bob"])
    memberships.remove({"Tools": ["ada"], "Sales.Ops": ["olga"]})
    assert memberships.members_of(["Tools", "Sales.Ops", "Nothing"]) == {
        "Tools": {"bob"},
        "Sales.Ops": set(),
        "Nothing": set(),
    }


def test_the_store_answers_a_ping(memberships):
    assert memberships.ping() is None
