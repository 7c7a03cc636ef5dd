"""Connector instances: the instances file, lazy creation, secrets and closing."""

from __future__ import annotations

import pytest

from policyd.connectors import ConnectorError, registry
from policyd.connectors.config import Connectors, InstanceConfig, load_instances
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
