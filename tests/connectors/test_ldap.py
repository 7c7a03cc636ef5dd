"""The ldap connector against a real slapd on loopback."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from policyd.connectors.base import ConnectorContext, ConnectorError, Target
from policyd.connectors.ldap import LdapConnector, create
from policyd.connectors.registry import create_connector
from policyd.testing import check_connector_contract
from tests.connectors.ldap_server import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    GROUPS,
    PEOPLE,
    READER_DN,
    READER_PASSWORD,
    USER_DN,
    USER_PASSWORD,
    Connect,
    Slapd,
    connect,
    running_slapd,
    settings_for,
    slapd,
)

__all__ = ["connect", "slapd"]  # fixtures, imported for pytest to find


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def test_contract_holds_for_a_group_name(slapd: Slapd, connect: Connect):
    """A `group:<cn>` resource keeps the connector contract."""
    group = slapd.add_group(["alice"])
    check_connector_contract(connect(), Target("bob", f"group:{group}"))


def test_contract_holds_for_a_dn_resource_and_a_url_with_a_slash(slapd: Slapd, connect: Connect):
    """A resource written as a DN is used as is, and `ldap://host:port/` is accepted."""
    group = slapd.add_group(["alice"])
    connector = connect(url=f"{slapd.url}/", group_base=None)
    check_connector_contract(connector, Target("bob", group_dn(group)))


def test_contract_holds_for_group_of_unique_names(slapd: Slapd, connect: Connect):
    """`member_attribute: uniqueMember` manages groupOfUniqueNames groups."""
    group = slapd.add_group(["alice"], object_class="groupOfUniqueNames", attribute="uniqueMember")
    connector = connect(member_attribute="uniqueMember")
    check_connector_contract(connector, Target("bob", f"group:{group}"))
    assert connector.members(f"group:{group}") == {"alice"}


def test_the_entry_point_creates_the_connector(slapd: Slapd):
    """The `ldap` type is registered and found through the registry."""
    context = ConnectorContext("ldap-test", settings_for(slapd), {"password": ADMIN_PASSWORD})
    connector = create_connector("ldap", context)
    try:
        assert isinstance(connector, LdapConnector)
        connector.health()
    finally:
        connector.close()


def test_contract_holds_over_ldaps(slapd: Slapd, connect: Connect):
    """An ldaps:// URL works when `ca_file` trusts the server's certificate."""
    group = slapd.add_group(["alice"])
    connector = connect(url=slapd.tls_url, ca_file=str(slapd.ca_file))
    check_connector_contract(connector, Target("bob", f"group:{group}"))


def test_start_tls_upgrades_a_plain_connection(connect: Connect, slapd: Slapd):
    """`start_tls: true` on an ldap:// URL verifies the certificate and then works as usual."""
    connector = connect(start_tls=True, ca_file=str(slapd.ca_file))
    connector.health()
    assert connector.members("group:Readers") == {"alice"}


@pytest.mark.parametrize("start_tls", [False, True])
def test_an_untrusted_certificate_is_not_retryable(slapd: Slapd, connect: Connect, start_tls: bool):
    """A certificate the system's CAs do not vouch for fails for good (TLS is always verified)."""
    url = slapd.url if start_tls else slapd.tls_url
    with pytest.raises(ConnectorError, match="certificate verify failed") as raised:
        connect(url=url, start_tls=start_tls).health()
    assert not raised.value.retryable


def test_granting_twice_stores_the_member_once(slapd: Slapd, connect: Connect):
    """A second grant of the same member is no error and adds no second value."""
    group = slapd.add_group(["alice"])
    connector = connect()
    connector.grant(Target("bob", f"group:{group}"))
    connector.grant(Target("bob", f"group:{group}"))
    bob = USER_DN.format(user_id="bob")
    assert sorted(slapd.values(group_dn(group), "member")) == [USER_DN.format(user_id="alice"), bob]


def test_revoking_an_absent_member_changes_nothing(slapd: Slapd, connect: Connect):
    """Revoking a user who is not a member is no error and leaves the group as it was."""
    group = slapd.add_group(["alice", "bob"])
    before = sorted(slapd.values(group_dn(group), "member"))
    connect().revoke(Target("carol", f"group:{group}"))
    assert sorted(slapd.values(group_dn(group), "member")) == before


def test_members_are_user_ids_read_back_through_the_template(slapd: Slapd, connect: Connect):
    """Member DNs matching `user_dn` (in any case and spacing) map to ids; other DNs are ignored."""
    group = slapd.add_group(
        ["alice"],
        extra=(
            "UID=bob, OU=People, DC=Example, DC=Org",
            f"uid=\\64ave,{PEOPLE}",  # "d" as a hex escape
            ADMIN_DN,
            f"uid=eve,ou=contractors,{GROUPS}",
            f"cn=carol,{PEOPLE}",
        ),
    )
    assert connect().members(f"group:{group}") == {"alice", "bob", "dave"}


def test_user_ids_with_dn_special_characters_round_trip(slapd: Slapd, connect: Connect):
    """A user id holding `,`, `+` and `=` is escaped in the DN and read back unchanged."""
    user_id = "o'neil, jr+ops=1"
    slapd.add_user(user_id)
    group = slapd.add_group(["alice"])
    connector = connect()
    connector.grant(Target(user_id, f"group:{group}"))
    assert connector.members(f"group:{group}") == {"alice", user_id}


def test_revoking_the_last_member_leaves_a_placeholder_until_the_next_grant(
    slapd: Slapd, connect: Connect
):
    """groupOfNames needs a member: the empty DN stands in, and the next grant removes it."""
    group = slapd.add_group(["alice"])
    connector = connect()
    connector.revoke(Target("alice", f"group:{group}"))
    assert slapd.values(group_dn(group), "member") == [""]
    assert connector.members(f"group:{group}") == set()
    connector.grant(Target("bob", f"group:{group}"))
    assert slapd.values(group_dn(group), "member") == [USER_DN.format(user_id="bob")]


def test_a_configured_placeholder_dn_is_used(slapd: Slapd, connect: Connect):
    """`empty_group_member` names the placeholder DN."""
    group = slapd.add_group(["alice"])
    placeholder = f"cn=nobody,{GROUPS}"
    connect(empty_group_member=placeholder).revoke(Target("alice", f"group:{group}"))
    assert slapd.values(group_dn(group), "member") == [placeholder]


def test_without_a_placeholder_the_last_member_cannot_be_revoked(slapd: Slapd, connect: Connect):
    """With `empty_group_member: null` the last member stays and the error is not retryable."""
    group = slapd.add_group(["alice"])
    with pytest.raises(ConnectorError, match="last member") as raised:
        connect(empty_group_member=None).revoke(Target("alice", f"group:{group}"))
    assert not raised.value.retryable
    assert slapd.values(group_dn(group), "member") == [USER_DN.format(user_id="alice")]


@pytest.mark.parametrize("operation", ["grant", "revoke", "members"])
def test_a_missing_group_is_not_retryable(connect: Connect, operation: str):
    """Every operation on a group that does not exist fails with a non-retryable error."""
    connector = connect()
    call = {
        "grant": lambda: connector.grant(Target("bob", "group:Nope")),
        "revoke": lambda: connector.revoke(Target("bob", "group:Nope")),
        "members": lambda: connector.members("group:Nope"),
    }[operation]
    with pytest.raises(ConnectorError, match="noSuchObject") as raised:
        call()
    assert not raised.value.retryable


def test_granting_to_an_unknown_user_is_not_retryable(slapd: Slapd, connect: Connect):
    """A user id without an entry under the template is refused before the group changes."""
    group = slapd.add_group(["alice"])
    with pytest.raises(ConnectorError, match="uid=zed") as raised:
        connect().grant(Target("zed", f"group:{group}"))
    assert not raised.value.retryable
    assert slapd.values(group_dn(group), "member") == [USER_DN.format(user_id="alice")]


@pytest.mark.parametrize(
    ("resource", "overrides", "message"),
    [
        ("Readers", {}, "neither group:<name> nor a DN"),
        ("group:Readers", {"group_base": None}, "group_base"),
        ("group:", {}, "needs a name"),
    ],
)
def test_an_unusable_resource_is_not_retryable(
    connect: Connect, resource: str, overrides: dict[str, Any], message: str
):
    """A resource that is neither `group:<name>` (with group_base) nor a DN fails for good."""
    with pytest.raises(ConnectorError, match=message) as raised:
        connect(**overrides).members(resource)
    assert not raised.value.retryable


def test_a_role_other_than_member_is_not_retryable(connect: Connect):
    """Only the `member` role is supported."""
    with pytest.raises(ConnectorError, match="role 'owner'") as raised:
        connect().grant(Target("bob", "group:Readers", role="owner"))
    assert not raised.value.retryable


def test_insufficient_access_is_not_retryable(slapd: Slapd, connect: Connect):
    """A bind DN that may read but not write groups gets a non-retryable error on grant."""
    group = slapd.add_group(["alice"])
    reader = connect(password=READER_PASSWORD, bind_dn=READER_DN)
    assert reader.members(f"group:{group}") == {"alice"}
    with pytest.raises(ConnectorError, match="insufficientAccessRights") as raised:
        reader.grant(Target("bob", f"group:{group}"))
    assert not raised.value.retryable


def test_a_wrong_password_is_not_retryable(connect: Connect):
    """A rejected bind fails health with a non-retryable error."""
    with pytest.raises(ConnectorError, match="invalidCredentials") as raised:
        connect(password="wrong").health()
    assert not raised.value.retryable


def test_health_binds_and_reads_the_root_dse(connect: Connect):
    """health() returns when the server answers and the bind succeeds."""
    connect().health()


@pytest.mark.parametrize("operation", ["health", "grant", "revoke", "members"])
def test_an_unreachable_server_is_retryable(connect: Connect, operation: str):
    """Nothing listening on the port gives a retryable error on every operation."""
    with socket.socket() as held:
        # Bound but not listening: connections are refused, and the port cannot be picked as
        # the client's own (a socket connected to itself would read back its bind request).
        held.bind(("127.0.0.1", 0))
        connector = connect(url=f"ldap://127.0.0.1:{held.getsockname()[1]}", connect_timeout=1)
        call = {
            "health": connector.health,
            "grant": lambda: connector.grant(Target("bob", "group:Readers")),
            "revoke": lambda: connector.revoke(Target("bob", "group:Readers")),
            "members": lambda: connector.members("group:Readers"),
        }[operation]
        with pytest.raises(ConnectorError, match=r"127\.0\.0\.1") as raised:
            call()
    assert raised.value.retryable


def test_a_server_whose_answer_is_not_ldap_is_retryable(connect: Connect):
    """Bytes ldap3 cannot decode (another service on the port; a socket connected to itself
    reads back its own bind request) give a retryable error naming the server, not ldap3's
    KeyError."""
    with socket.socket() as echo:
        echo.bind(("127.0.0.1", 0))
        echo.listen()
        port = echo.getsockname()[1]

        def answer_with_the_request() -> None:
            conn, _ = echo.accept()
            with conn:
                conn.sendall(conn.recv(4096))  # as a socket connected to itself reads it

        server = threading.Thread(target=answer_with_the_request, daemon=True)
        server.start()
        connector = connect(url=f"ldap://127.0.0.1:{port}", timeout=2)
        with pytest.raises(ConnectorError, match=r"not LDAP") as raised:
            connector.health()
        server.join(timeout=5)
    assert raised.value.retryable


def test_a_server_that_does_not_answer_is_retryable(connect: Connect):
    """A bind that gets no answer within `timeout` seconds gives a retryable error."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts connections; nobody ever answers
        port = silent.getsockname()[1]
        connector = connect(url=f"ldap://127.0.0.1:{port}", timeout=1)
        with pytest.raises(ConnectorError) as raised:
            connector.health()
    assert raised.value.retryable


def test_a_stopped_server_is_retryable_and_a_restarted_one_is_used_again(tmp_path):
    """Pooled connections to a server that went away are replaced once it is back."""
    with running_slapd(tmp_path) as server:
        context = ConnectorContext("ldap-test", settings_for(server), {"password": ADMIN_PASSWORD})
        connector = create(context)
        try:
            assert connector.members("group:Readers") == {"alice"}
            server.stop()
            with pytest.raises(ConnectorError) as raised:
                connector.members("group:Readers")
            assert raised.value.retryable
            server.start()
            assert connector.members("group:Readers") == {"alice"}
            server.stop()
            server.start()
            assert connector.members("group:Readers") == {"alice"}  # a dead pooled connection
        finally:
            connector.close()


def test_one_connector_serves_many_threads(slapd: Slapd, connect: Connect):
    """Concurrent grants and member reads through one connector all take effect."""
    group = slapd.add_group(["alice"])
    connector = connect(pool_size=2)
    users = ["bob", "carol", "dave"]
    with ThreadPoolExecutor(max_workers=6) as pool:
        grants = [pool.submit(connector.grant, Target(u, f"group:{group}")) for u in users * 3]
        reads = [pool.submit(connector.members, f"group:{group}") for _ in range(6)]
        for future in grants + reads:
            future.result()
    assert connector.members(f"group:{group}") == {"alice", *users}


def test_disable_user_locks_the_account(slapd: Slapd, connect: Connect):
    """After disable_user (twice) the user can no longer bind."""
    frank = slapd.add_user("frank")
    assert slapd.can_bind(frank, USER_PASSWORD)
    connector = connect()
    connector.disable_user("frank")
    connector.disable_user("frank")
    assert not slapd.can_bind(frank, USER_PASSWORD)


def test_delete_user_removes_the_entry_and_is_idempotent(slapd: Slapd, connect: Connect):
    """delete_user removes the user's entry; deleting it again is no error."""
    slapd.add_user("gina")
    connector = connect()
    connector.delete_user("gina")
    connector.delete_user("gina")
    with pytest.raises(ConnectorError, match="noSuchObject"):
        connector.grant(Target("gina", "group:Readers"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "http://127.0.0.1"}, "url must be"),
        ({"user_dn": "uid=alice,ou=people,dc=example,dc=org"}, "exactly once"),
        ({"user_dn": "uid=x{user_id},ou=people,dc=example,dc=org"}, "whole attribute value"),
        ({"group_base": "not a dn"}, "attribute type"),
        ({"start_tls": "yes"}, "true or false"),
        ({"timeout": 0}, "positive"),
        ({"empty_group_member": "nobody"}, "attribute type"),
        ({"ca_file": "missing.pem"}, "not a file"),
        ({"timeouts": 3}, "unknown settings timeouts"),
    ],
)
def test_invalid_settings_are_refused(slapd: Slapd, overrides: dict[str, Any], message: str):
    """Bad settings fail at creation with a non-retryable error naming the problem."""
    context = ConnectorContext("ldap-test", settings_for(slapd, **overrides), {"password": "x"})
    with pytest.raises(ConnectorError, match=message) as raised:
        create(context)
    assert not raised.value.retryable


def test_a_bind_dn_needs_the_password_secret(slapd: Slapd):
    """A bind DN without the `password` secret is refused at creation."""
    with pytest.raises(ConnectorError, match="password"):
        create(ConnectorContext("ldap-test", settings_for(slapd)))


def test_bulk_calls_change_each_group_with_one_modify(slapd: Slapd, connect: Connect):
    """grant_many and revoke_many add and remove many members per group at once; members
    already there, or already gone, are no error."""
    people = [f"bulk{i:02}" for i in range(30)]
    for uid in people:
        slapd.add_user(uid)
    group = slapd.add_group(["alice"])
    connector = connect()
    targets = [Target(uid, f"group:{group}") for uid in people]
    assert connector.grant_many([*targets, Target("alice", f"group:{group}")]) == [None] * 31
    assert connector.members(f"group:{group}") == {"alice", *people}
    assert connector.revoke_many([*targets[:20], Target("carol", f"group:{group}")]) == [None] * 21
    assert connector.members(f"group:{group}") == {"alice", *people[20:]}


def test_a_bulk_revoke_reads_only_the_members_it_removes(slapd: Slapd, connect: Connect):
    """Where revoke_many must read (a server without permissive modify), it asks slapd for
    just the targets' values of the member list (matchedValues), not the whole list: an
    absent target is simply not among them."""
    group = slapd.add_group(["alice", "bob", "dave"])
    connector = connect()
    wanted = [f"uid={uid},{PEOPLE}" for uid in ("bob", "carol")]
    read = connector._pool.call(lambda conn: connector._read_members(conn, group_dn(group), wanted))
    assert read == [wanted[0]]
    targets = [Target(uid, f"group:{group}") for uid in ("bob", "carol")]
    assert connector.revoke_many(targets) == [None, None]
    assert connector.members(f"group:{group}") == {"alice", "dave"}


def test_a_bulk_call_gives_each_target_its_own_outcome(slapd: Slapd, connect: Connect):
    """An unknown user fails alone (its group is then done target by target), a malformed
    resource fails alone, and emptying a group still leaves the placeholder."""
    group, other = slapd.add_group(["alice"]), slapd.add_group(["bob"])
    connector = connect()
    errors = connector.grant_many(
        [
            Target("carol", f"group:{group}"),
            Target("zed", f"group:{group}"),  # no such user
            Target("dave", "Readers"),  # neither group:<name> nor a DN
            Target("dave", f"group:{other}"),
        ]
    )
    assert [error is None for error in errors] == [True, False, False, True]
    assert "uid=zed" in str(errors[1]) and not errors[1].retryable
    assert connector.members(f"group:{group}") == {"alice", "carol"}
    assert connector.members(f"group:{other}") == {"bob", "dave"}
    assert connector.revoke_many([Target(uid, f"group:{group}") for uid in ("alice", "carol")]) == [
        None,
        None,
    ]
    assert slapd.values(group_dn(group), "member") == [""]  # the placeholder, as revoke leaves
