"""Connector instances: the instances file, lazy creation, secrets and closing."""

from __future__ import annotations

import pytest

from policyd.connectors import ConnectorError, registry
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
