"""The ldap connector's bulk revokes against a real slapd: one permissive modify per group,
and each target's own outcome when part of a batch fails."""

from __future__ import annotations

from typing import Any

import pytest

from policyd.connectors.base import ConnectorContext, Target
from policyd.connectors.ldap import connector as ldap_connector
from policyd.connectors.ldap import create
from tests.connectors.ldap_server import (
    ADMIN_PASSWORD,
    GROUPS,
    READER_DN,
    READER_PASSWORD,
    USER_DN,
    Connect,
    Slapd,
    connect,
    ldap3,
    running_slapd,
    settings_for,
    slapd,
)

__all__ = ["connect", "slapd"]  # fixtures, imported for pytest to find

UNKNOWN_CONTROL = ("1.3.6.1.4.1.4203.666.99.1", True, None)  # an OID no server implements


@pytest.fixture
def operations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The LDAP operations the connectors send, in order (the real ones, only noted)."""
    sent: list[str] = []
    for name in ("search", "modify"):
        original = getattr(ldap3.Connection, name)

        def noting(self: Any, *args: Any, _name: str = name, _original: Any = original, **kw: Any):
            sent.append(_name)
            return _original(self, *args, **kw)

        monkeypatch.setattr(ldap3.Connection, name, noting)
    return sent


def dn(user_id: str) -> str:
    return USER_DN.format(user_id=user_id)


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def test_a_bulk_revoke_is_one_modify_per_group_without_a_read(
    slapd: Slapd, connect: Connect, operations: list[str]
):
    """revoke_many deletes a group's targets with one permissive modify and reads nothing
    first; targets already gone, twice in the batch or spelt in another case are done."""
    group = slapd.add_group(["alice", "bob", "carol", "dave"])
    connector = connect()
    targets = [Target(uid, f"group:{group}") for uid in ("bob", "carol", "zed", "bob", "DAVE")]
    assert connector.revoke_many(targets) == [None] * 5
    assert operations == ["modify"]
    assert slapd.values(group_dn(group), "member") == [dn("alice")]


def test_a_server_refusing_permissive_modify_gets_the_present_members_read_first(
    slapd: Slapd, connect: Connect, operations: list[str], monkeypatch: pytest.MonkeyPatch
):
    """Where the server refuses the control (unavailableCriticalExtension), the connector
    deletes without it, reads the targets' values only when one is absent, and from then on
    does not send the control again."""
    monkeypatch.setattr(ldap_connector, "PERMISSIVE_MODIFY", UNKNOWN_CONTROL)
    group = slapd.add_group(["alice", "bob", "carol", "dave"])
    connector = connect()
    targets = [Target(uid, f"group:{group}") for uid in ("bob", "zed")]
    assert connector.revoke_many(targets) == [None, None]
    assert operations == ["modify", "modify", "search", "modify"]  # refused, 16, read, delete
    operations.clear()
    assert connector.revoke_many([Target("carol", f"group:{group}")]) == [None]
    assert operations == ["modify"]
    assert sorted(slapd.values(group_dn(group), "member")) == [dn("alice"), dn("dave")]


def test_a_bulk_revoke_emptying_a_group_leaves_the_placeholder_in_the_same_modify(
    slapd: Slapd, connect: Connect
):
    """Revoking every member at once leaves the placeholder, as one revoke of the last
    member does; a later batch of the same members changes nothing."""
    group = slapd.add_group(["alice", "bob"])
    targets = [Target(uid, f"group:{group}") for uid in ("alice", "bob")]
    connector = connect()
    assert connector.revoke_many(targets) == [None, None]
    assert slapd.values(group_dn(group), "member") == [""]
    assert connector.revoke_many(targets) == [None, None]
    assert slapd.values(group_dn(group), "member") == [""]


def test_without_a_placeholder_only_the_last_members_revoke_fails(slapd: Slapd, connect: Connect):
    """With empty_group_member off, a batch that would empty a group is done target by
    target: every revoke but the last member's succeeds; that one fails for good."""
    group = slapd.add_group(["alice", "bob", "carol"])
    targets = [Target(uid, f"group:{group}") for uid in ("alice", "bob", "carol")]
    errors = connect(empty_group_member=None).revoke_many(targets)
    assert [error is None for error in errors] == [True, True, False]
    assert "cannot remove the last member" in str(errors[2]) and not errors[2].retryable
    assert slapd.values(group_dn(group), "member") == [dn("carol")]


def test_a_failing_group_fails_only_its_own_targets(slapd: Slapd, connect: Connect):
    """In one batch over three groups, the targets of a group that does not exist each fail
    for good, a malformed resource fails alone, and the other groups lose their targets."""
    first, second = slapd.add_group(["alice", "bob"]), slapd.add_group(["bob", "carol"])
    targets = [
        Target("bob", f"group:{first}"),
        Target("alice", "group:Nope"),
        Target("bob", f"group:{second}"),
        Target("carol", "Readers"),  # neither group:<name> nor a DN
        Target("bob", "group:Nope"),
        Target("zed", f"group:{second}"),  # not a member: already done
    ]
    errors = connect().revoke_many(targets)
    assert [error is None for error in errors] == [True, False, True, False, False, True]
    for index in (1, 4):
        assert "noSuchObject" in str(errors[index]) and not errors[index].retryable
    assert "neither group:<name> nor a DN" in str(errors[3])
    assert slapd.values(group_dn(first), "member") == [dn("alice")]
    assert slapd.values(group_dn(second), "member") == [dn("carol")]


def test_a_group_the_bind_dn_may_not_write_fails_each_target_at_once(
    slapd: Slapd, connect: Connect, operations: list[str]
):
    """insufficientAccessRights concerns the group: each of its targets fails with it, for
    good, without a modify of its own."""
    group = slapd.add_group(["alice", "bob", "carol"])
    reader = connect(password=READER_PASSWORD, bind_dn=READER_DN)
    errors = reader.revoke_many([Target(uid, f"group:{group}") for uid in ("alice", "bob")])
    assert all("insufficientAccessRights" in str(e) and not e.retryable for e in errors)
    assert operations == ["modify"]
    assert len(slapd.values(group_dn(group), "member")) == 3


def test_a_server_that_is_down_fails_each_target_retryably_and_a_retry_revokes(tmp_path):
    """With slapd stopped, every target of a batch fails with a retryable error (no target
    is tried alone); once it is back, the same batch revokes them all."""
    with running_slapd(tmp_path) as server:
        group = server.add_group(["alice", "bob", "carol"])
        context = ConnectorContext("ldap-test", settings_for(server), {"password": ADMIN_PASSWORD})
        connector = create(context)
        targets = [Target(uid, f"group:{group}") for uid in ("alice", "bob")]
        try:
            server.stop()
            errors = connector.revoke_many(targets)
            assert len(errors) == 2 and all(error and error.retryable for error in errors)
            server.start()
            assert connector.revoke_many(targets) == [None, None]
            assert server.values(group_dn(group), "member") == [dn("carol")]
        finally:
            connector.close()
