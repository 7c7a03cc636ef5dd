"""The scim connector against a real SCIM server (scim2-server) on loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from policyd.connectors.base import ConnectorContext, ConnectorError, Target
from policyd.connectors.registry import create_connector
from policyd.connectors.scim import ScimConnector, create
from policyd.testing import check_connector_contract
from tests.connectors.scim_server import TOKEN, ScimServer, open_scim_server, scim_server

__all__ = ["open_scim_server", "scim_server"]  # fixtures, imported for pytest to find

Connect = Callable[..., ScimConnector]


@pytest.fixture
def connect(scim_server: ScimServer) -> Iterator[Connect]:
    """Build scim connectors (closed after the test); the default points at `scim_server`."""
    made: list[ScimConnector] = []

    def _connect(
        settings: dict[str, Any] | None = None, secrets: dict[str, str] | None = None
    ) -> ScimConnector:
        context = ConnectorContext(
            name="scim-test",
            settings={"url": scim_server.url} if settings is None else settings,
            secrets={"token": TOKEN} if secrets is None else secrets,
        )
        connector = create(context)
        assert isinstance(connector, ScimConnector)
        made.append(connector)
        return connector

    yield _connect
    for connector in made:
        connector.close()


def test_contract_holds_for_a_group_named_by_display_name(
    scim_server: ScimServer, connect: Connect
):
    """A `group:<displayName>` resource keeps the connector contract."""
    scim_server.create_user("alice", "alice@example.org")
    scim_server.create_group("Readers")
    check_connector_contract(connect(), Target("alice", "group:Readers"))


def test_contract_holds_for_a_group_named_by_id(scim_server: ScimServer, connect: Connect):
    """An `id:<scim id>` resource keeps the connector contract."""
    scim_server.create_user("alice")
    group_id = scim_server.create_group("Readers")
    check_connector_contract(connect(), Target("alice", f"id:{group_id}"))


def test_contract_holds_without_a_token_on_an_open_server(open_scim_server: ScimServer):
    """Without a `token` secret the connector sends no Authorization header and still works."""
    open_scim_server.create_user("alice")
    open_scim_server.create_group("Readers")
    connector = create(ConnectorContext("scim-open", settings={"url": open_scim_server.url}))
    try:
        check_connector_contract(connector, Target("alice", "group:Readers"))
    finally:
        connector.close()


def test_granting_twice_leaves_one_membership(scim_server: ScimServer, connect: Connect):
    """A second grant adds no duplicate member entry on the server."""
    user_id = scim_server.create_user("alice")
    group_id = scim_server.create_group("Readers")
    connector = connect()
    connector.grant(Target("alice", "group:Readers"))
    connector.grant(Target("alice", "group:Readers"))
    assert scim_server.member_values(group_id) == [user_id]


def test_revoking_a_non_member_keeps_the_other_members(scim_server: ScimServer, connect: Connect):
    """Revoking someone who is not a member is no error and removes nobody else."""
    scim_server.create_user("alice")
    bob = scim_server.create_user("bob")
    group_id = scim_server.create_group("Readers", {"value": bob})
    connect().revoke(Target("alice", "group:Readers"))
    assert scim_server.member_values(group_id) == [bob]


def test_revoking_a_user_the_server_does_not_know_is_no_error(
    scim_server: ScimServer, connect: Connect
):
    """A user absent from the SCIM server holds no group, so revoking succeeds."""
    scim_server.create_group("Readers")
    connect().revoke(Target("ghost", "group:Readers"))


def test_email_lookup_finds_the_user_by_email(scim_server: ScimServer, connect: Connect):
    """With `user_lookup: email` the user is found by Target.email, whatever its userName."""
    user_id = scim_server.create_user("c.lee", "c.lee@example.org", "carol@example.org")
    group_id = scim_server.create_group("Readers")
    connector = connect({"url": scim_server.url, "user_lookup": "email"})
    target = Target("carol", "group:Readers", email="carol@example.org")
    connector.grant(target)
    assert scim_server.member_values(group_id) == [user_id]
    assert connector.members("group:Readers") == {"c.lee"}
    connector.revoke(target)
    assert scim_server.member_values(group_id) == []


def test_email_lookup_without_an_email_is_not_retryable(scim_server: ScimServer, connect: Connect):
    """A target without an email cannot be looked up by email, and retrying will not help."""
    scim_server.create_group("Readers")
    connector = connect({"url": scim_server.url, "user_lookup": "email"})
    with pytest.raises(ConnectorError, match="no email") as caught:
        connector.grant(Target("carol", "group:Readers"))
    assert caught.value.retryable is False


def test_filter_values_with_quotes_are_escaped(scim_server: ScimServer, connect: Connect):
    """A displayName holding quotes and backslashes still names exactly its group."""
    scim_server.create_user('o"brien\\x')
    scim_server.create_group('Say "hi" \\ bye')
    check_connector_contract(connect(), Target('o"brien\\x', 'group:Say "hi" \\ bye'))


def test_case_variants_of_a_display_name_resolve_to_the_exact_one(
    scim_server: ScimServer, connect: Connect
):
    """When displayNames differ only by case, the exact one is used, and no guess is made."""
    alice = scim_server.create_user("alice")
    readers = scim_server.create_group("Readers")
    lower = scim_server.create_group("readers")
    connector = connect()
    connector.grant(Target("alice", "group:Readers"))
    assert (scim_server.member_values(readers), scim_server.member_values(lower)) == ([alice], [])
    with pytest.raises(ConnectorError, match="several SCIM groups") as caught:
        connector.members("group:READERS")
    assert caught.value.retryable is False


def test_an_email_shared_by_two_users_is_not_retryable(scim_server: ScimServer, connect: Connect):
    """An email that matches several SCIM users is refused rather than guessed."""
    scim_server.create_user("c.lee", "carol@example.org")
    scim_server.create_user("carol", "carol@example.org")
    scim_server.create_group("Readers")
    connector = connect({"url": scim_server.url, "user_lookup": "email"})
    with pytest.raises(ConnectorError, match="several SCIM users") as caught:
        connector.grant(Target("carol", "group:Readers", email="carol@example.org"))
    assert caught.value.retryable is False


def test_members_reports_user_names_and_skips_nested_groups(
    scim_server: ScimServer, connect: Connect
):
    """members() maps member ids to userNames and leaves out member groups."""
    alice = scim_server.create_user("alice")
    bob = scim_server.create_user("bob")
    readers = scim_server.create_group("Readers", {"value": bob, "type": "User"})
    scim_server.create_group(
        "Staff", {"value": alice, "display": "Alice A."}, {"value": readers, "type": "Group"}
    )
    assert connect().members("group:Staff") == {"alice"}


@pytest.mark.parametrize("resource", ["group:Nope", "id:no-such-id"])
@pytest.mark.parametrize("operation", ["grant", "revoke", "members"])
def test_unknown_group_is_not_retryable(
    scim_server: ScimServer, connect: Connect, resource: str, operation: str
):
    """A group the server does not have fails at once instead of being retried."""
    scim_server.create_user("alice")
    connector = connect()
    with pytest.raises(ConnectorError) as caught:
        if operation == "members":
            connector.members(resource)
        else:
            getattr(connector, operation)(Target("alice", resource))
    assert caught.value.retryable is False


def test_granting_to_an_unknown_user_is_not_retryable(scim_server: ScimServer, connect: Connect):
    """Granting to a user the server does not have fails at once."""
    scim_server.create_group("Readers")
    with pytest.raises(ConnectorError, match="no SCIM user 'ghost'") as caught:
        connect().grant(Target("ghost", "group:Readers"))
    assert caught.value.retryable is False


@pytest.mark.parametrize("resource", ["Readers", "group:", "dn:cn=Readers", "id:"])
def test_malformed_resource_is_not_retryable(connect: Connect, resource: str):
    """A resource that is neither group:<displayName> nor id:<scim id> is refused."""
    with pytest.raises(ConnectorError, match="group:<displayName>") as caught:
        connect().members(resource)
    assert caught.value.retryable is False


def test_stopped_server_is_retryable(scim_server: ScimServer, connect: Connect):
    """Once the server is gone, every call fails with a retryable error."""
    scim_server.create_user("alice")
    scim_server.create_group("Readers")
    connector = connect()
    connector.health()
    scim_server.stop()
    for call in (connector.health, lambda: connector.grant(Target("alice", "group:Readers"))):
        with pytest.raises(ConnectorError) as caught:
            call()
        assert caught.value.retryable is True


def test_server_errors_are_retryable(scim_server: ScimServer, connect: Connect):
    """A 5xx answer is retryable, and the call works again once the server recovers."""
    scim_server.create_user("alice")
    scim_server.create_group("Readers")
    connector = connect()
    scim_server.outage.down = True
    with pytest.raises(ConnectorError, match="HTTP 503") as caught:
        connector.grant(Target("alice", "group:Readers"))
    assert caught.value.retryable is True
    scim_server.outage.down = False
    connector.grant(Target("alice", "group:Readers"))
    assert connector.members("group:Readers") == {"alice"}


def test_timeout_is_retryable(connect: Connect):
    """A server that accepts the connection but never answers times out, retryably."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        connector = connect({"url": f"http://127.0.0.1:{port}/v2", "timeout": 0.2})
        with pytest.raises(ConnectorError, match="timed out") as caught:
            connector.health()
    assert caught.value.retryable is True


@pytest.mark.parametrize("secrets", [{"token": "wrong"}, {}], ids=["wrong", "missing"])
def test_wrong_token_is_not_retryable(
    scim_server: ScimServer, connect: Connect, secrets: dict[str, str]
):
    """A refused token (HTTP 401) fails at once, in health() as in grant()."""
    scim_server.create_user("alice")
    scim_server.create_group("Readers")
    connector = connect(secrets=secrets)
    for call in (connector.health, lambda: connector.grant(Target("alice", "group:Readers"))):
        with pytest.raises(ConnectorError, match="HTTP 401") as caught:
            call()
        assert caught.value.retryable is False


def test_health_passes_on_a_working_server(connect: Connect):
    """health() returns quietly when the server answers and accepts the token."""
    connect().health()


def test_grants_from_many_threads_share_one_connector(scim_server: ScimServer, connect: Connect):
    """One instance serves concurrent grants from several threads."""
    names = [f"user{i}" for i in range(16)]
    for name in names:
        scim_server.create_user(name)
    scim_server.create_group("Readers")
    connector = connect()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: connector.grant(Target(n, "group:Readers")), names))
    assert connector.members("group:Readers") == set(names)


def test_the_registry_creates_the_scim_type(scim_server: ScimServer):
    """The `scim` entry point resolves to this connector."""
    context = ConnectorContext("scim-test", {"url": scim_server.url}, {"token": TOKEN})
    connector = create_connector("scim", context)
    assert isinstance(connector, ScimConnector)
    connector.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "'url'"),
        ({"url": "scim.example.com/v2"}, "'url'"),
        ({"url": "https://scim.example.com/v2", "user_lookup": "mail"}, "'user_lookup'"),
        ({"url": "https://scim.example.com/v2", "timeout": 0}, "'timeout'"),
        ({"url": "https://scim.example.com/v2", "connect_timeout": "5"}, "'connect_timeout'"),
        ({"url": "https://scim.example.com/v2", "tiemout": 5}, "unknown settings tiemout"),
    ],
)
def test_invalid_settings_are_not_retryable(settings: dict[str, Any], message: str):
    """Bad settings fail when the instance is created, naming the setting."""
    with pytest.raises(ConnectorError, match=message) as caught:
        create(ConnectorContext("scim-bad", settings=settings))
    assert caught.value.retryable is False


def test_bulk_calls_change_each_group_with_one_patch_per_hundred(
    scim_server: ScimServer, connect: Connect
):
    """grant_many and revoke_many look each group and user up once and send one PATCH per
    group and 100 members; each target gets its own outcome, in order."""
    names = [f"user{number:03}" for number in range(130)]
    for name in names:
        scim_server.create_user(name)
    scim_server.create_user("carol")
    scim_server.create_group("Readers")
    scim_server.create_group("Writers")
    connector = connect()
    methods: list[str] = []
    connector._client.event_hooks["request"].append(lambda request: methods.append(request.method))

    targets = [Target(name, "group:Readers") for name in names] + [
        Target("alice", "group:Writers"),  # no such user
        Target("carol", "group:Missing"),  # no such group
        Target("carol", "group:Writers"),
    ]
    results = connector.grant_many(targets)
    assert results[:130] == [None] * 130 and results[132] is None
    assert "no SCIM user 'alice'" in str(results[130]) and not results[130].retryable
    assert "no SCIM group" in str(results[131]) and not results[131].retryable
    assert methods.count("PATCH") == 3  # Readers twice (130 members), Writers once
    assert connector.members("group:Readers") == set(names)
    assert connector.members("group:Writers") == {"carol"}

    methods.clear()
    leaving = [Target(name, "group:Readers") for name in names[:40]]
    results = connector.revoke_many([*leaving, *leaving[:5], Target("ghost", "group:Readers")])
    assert results == [None] * 46  # twice, or never known: no error
    assert methods.count("PATCH") == 1
    assert connector.members("group:Readers") == set(names[40:])


def test_a_bulk_call_on_a_stopped_server_fails_every_target_retryably_at_once(
    scim_server: ScimServer, connect: Connect
):
    """The first retryable error ends the call: the rest do not each wait for a timeout."""
    for name in ("alice", "bob"):
        scim_server.create_user(name)
    scim_server.create_group("Readers")
    connector = connect()
    connector.health()
    scim_server.stop()
    methods: list[str] = []
    connector._client.event_hooks["request"].append(lambda request: methods.append(request.method))
    targets = [Target(name, "group:Readers") for name in ("alice", "bob")] * 50
    for bulk in (connector.grant_many, connector.revoke_many):
        methods.clear()
        results = bulk(targets)
        assert all(error is not None and error.retryable for error in results)
        assert len(methods) == 1


def test_a_group_whose_bulk_patch_is_refused_is_done_member_by_member(
    scim_server: ScimServer, connect: Connect, monkeypatch: pytest.MonkeyPatch
):
    """Some servers cap the members one PATCH may change (400 tooMany); then each member
    gets a PATCH of its own and its own outcome."""
    for name in ("alice", "bob", "carol"):
        scim_server.create_user(name)
    scim_server.create_group("Readers")
    connector = connect()
    patch = connector._patch_group

    def capped(group_id, operation, *, absent_ok=False):
        if len(operation.get("value") or []) > 1 or " or " in operation.get("path", ""):
            raise ConnectorError("scim connector: HTTP 400 (tooMany)", retryable=False)
        return patch(group_id, operation, absent_ok=absent_ok)

    monkeypatch.setattr(connector, "_patch_group", capped)
    targets = [Target(name, "group:Readers") for name in ("alice", "bob", "carol")]
    assert connector.grant_many(targets) == [None, None, None]
    assert connector.members("group:Readers") == {"alice", "bob", "carol"}
    assert connector.revoke_many(targets[:2]) == [None, None]
    assert connector.members("group:Readers") == {"carol"}
