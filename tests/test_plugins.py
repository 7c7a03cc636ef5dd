"""The plugin registry shared by connectors and notifiers."""

from __future__ import annotations

import logging

import pytest

from policyd.connectors import registry as connectors
from policyd.plugins import PluginTypes


def test_builtins_are_found_through_entry_points():
    """Every built-in connector type is registered like a third-party plugin."""
    connectors.reset()
    assert {"directory", "ldap", "scim", "webhook"} <= set(connectors.connector_types())


def test_unknown_types_name_the_installed_ones():
    """Asking for a type that is not installed names what is."""
    with pytest.raises(connectors.UnknownConnectorTypeError) as caught:
        connectors.create_connector("nosuch", None)
    assert "unknown connector type 'nosuch'; installed: directory" in str(caught.value)


def test_a_broken_plugin_is_logged_not_raised(monkeypatch, caplog):
    """An entry point that fails to import leaves the others usable."""

    class Broken:
        name, value = "broken", "somewhere.else:create"

        def load(self):
            raise ImportError("no module named somewhere")

    monkeypatch.setattr("policyd.plugins.entry_points", lambda group: [Broken()])
    plugins = PluginTypes("policyd.test", "test")
    with caplog.at_level(logging.ERROR):
        assert plugins.types() == {}
    assert "test plugin broken (somewhere.else:create) failed to load" in caplog.text


def test_autoload_off_keeps_only_builtins(monkeypatch):
    """POLICYD_DISABLE_PLUGIN_AUTOLOAD=1 skips entry points outside policyd."""

    class Entry:
        def __init__(self, name, value):
            self.name, self.value = name, value

        def load(self):
            return self.value

    entries = [Entry("mine", "policyd.x:create"), Entry("theirs", "vendor.y:create")]
    monkeypatch.setattr("policyd.plugins.entry_points", lambda group: entries)
    monkeypatch.setenv("POLICYD_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert list(PluginTypes("policyd.test", "test").types()) == ["mine"]


def test_unknown_settings_are_named_with_the_known_ones():
    """A typo in an instance's settings is named beside every setting the type knows."""
    from policyd.plugins import unknown_settings

    assert unknown_settings({"url": 1, "timout": 2}, {"url", "timeout"}) == (
        "unknown settings timout; known: timeout, url"
    )
    assert unknown_settings({"url": 1}, {"url", "timeout"}) is None
