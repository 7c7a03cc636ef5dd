"""Connector instances: the instances file, lazy creation, secrets and closing."""

from __future__ import annotations

import pytest

from policyd.connectors import ConnectorError, registry
from policyd.connectors.base import Abilities, AbilityError
from policyd.connectors.config import Connectors, InstanceConfig, load_instances
from policyd.connectors.registry import resource_problem
from policyd.rules import ProblemsError


class Closable:
    def __init__(self, context):
        self.name = context.name
        self.secret = context.secrets.get("token")
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def closable():
    registry.register("closable", Closable)
    yield
    registry.reset()


def test_instances_are_created_once_with_their_secrets_and_closed(closable):
    """An instance is built on first use with secrets from the environment and closed once."""
    instances = {"app": InstanceConfig("app", "closable", {}, {"token": "APP_TOKEN"})}
    connectors = Connectors(instances, environ={"APP_TOKEN": "s3cret"})
    first = connectors.get("app")
    assert connectors.get("app") is first and first.secret == "s3cret"
    connectors.close()
    assert first.closed


def test_a_missing_secret_is_a_permanent_error(closable):
    """An environment variable that is not set fails the instance, naming the variable."""
    instances = {"app": InstanceConfig("app", "closable", {}, {"token": "APP_TOKEN"})}
    with pytest.raises(ConnectorError) as caught:
        Connectors(instances, environ={}).get("app")
    assert "APP_TOKEN is not set" in str(caught.value) and not caught.value.retryable


def test_instances_file_errors_have_lines(tmp_path, closable):
    """Unknown keys, duplicate names and bad secret names are all reported with lines."""
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "apiVersion: policyd/v1\nconnectors:\n"
        "  - {name: a, type: closable, colour: red}\n"
        "  - {name: b, type: closable, secrets: {token: lower_case}}\n"
    )
    with pytest.raises(ProblemsError) as caught:
        load_instances(path)
    text = str(caught.value)
    assert f"{path}:3: connectors[0].colour: Unknown field." in text
    assert f"{path}:4: connectors[1].secrets.token" in text
    assert list(load_instances(None)) == ["directory"]


@pytest.mark.parametrize(
    ("type_name", "resource", "role", "problem"),
    [
        ("directory", "group:Readers", "member", None),
        ("directory", "Readers", "member", "directory resources are group:<id>"),
        ("ldap", "cn=Readers,ou=groups,dc=example,dc=org", "member", None),
        ("ldap", "group:Readers", "member", None),
        ("ldap", "group:Readers", "owner", "only 'member'"),
        ("ldap", "Readers", "member", "neither group:<name> nor a DN"),
        ("scim", "group:Readers", "member", None),
        ("scim", "id:2819c223", "member", None),
        ("scim", "Readers", "member", "group:<displayName> or id:<scim id>"),
        ("webhook", "app:anything", "whatever", None),  # a webhook names what it likes
    ],
)
def test_connector_types_check_resources_before_publication(type_name, resource, role, problem):
    """Each built-in type says which resources it could never work with."""
    found = resource_problem(type_name, resource, role)
    assert found is None if problem is None else problem in found


def checks_badly(context):
    return Closable(context)


checks_badly.check_resource = lambda resource: None  # policyd passes (resource, role)


def says_maybe(context):
    return Closable(context)


says_maybe.takes_events = "maybe"


def deaf(context):
    return Closable(context)  # no send()


deaf.takes_events = True


class BadBulk(Closable):
    def grant_many(self, targets, batch_size): ...

    def revoke_many(self, targets): ...


@pytest.fixture
def odd_types(closable):
    for name, factory in [
        ("checks-badly", checks_badly),
        ("says-maybe", says_maybe),
        ("deaf", deaf),
        ("bad-bulk", BadBulk),
    ]:
        registry.register(name, factory)


def test_a_type_declaring_an_ability_badly_is_refused_at_its_line(tmp_path, odd_types):
    """The instances file names the line, the instance and the factory's wrong attribute."""
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "apiVersion: policyd/v1\nconnectors:\n"
        "  - {name: fine, type: closable}\n"
        "  - {name: crm, type: checks-badly}\n"
        "  - {name: hook, type: says-maybe}\n"
    )
    with pytest.raises(ProblemsError) as caught:
        load_instances(path)
    text = str(caught.value)
    assert (
        f"{path}:4: connectors[1].type: 'crm': connector type 'checks-badly': "
        "check_resource(resource) cannot be called as check_resource(resource, role)"
    ) in text
    assert (
        f"{path}:5: connectors[2].type: 'hook': connector type 'says-maybe': "
        "takes_events must be true or false"
    ) in text
    assert "connectors[0]" not in text
    assert resource_problem("checks-badly", "x", "member").startswith("connector type")


def test_an_instance_declaring_an_ability_badly_is_refused_when_created(odd_types):
    """Creating it raises AbilityError naming the instance and the method, every time."""
    instances = {"crm": InstanceConfig("crm", "bad-bulk"), "ok": InstanceConfig("ok", "closable")}
    connectors = Connectors(instances)
    for _ in range(2):
        with pytest.raises(AbilityError) as refused:
            connectors.get("crm")
        assert "connector 'crm': grant_many(targets, batch_size) cannot be called" in str(
            refused.value
        )
        assert not refused.value.retryable
    assert connectors.abilities("ok") == Abilities(closes=True)


def test_an_event_taking_type_whose_instance_cannot_send_is_refused(odd_types):
    """A factory that says takes_events makes a listener; its instance must have send."""
    connectors = Connectors({"hook": InstanceConfig("hook", "deaf")})
    assert connectors.listeners() == frozenset({"hook"})
    with pytest.raises(AbilityError, match="connector 'hook' takes events but has no send"):
        connectors.get("hook")
