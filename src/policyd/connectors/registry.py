"""Connector types, discovered once from the `policyd.connectors` entry-point group."""

from __future__ import annotations

from policyd.connectors.base import Connector, ConnectorContext, ConnectorFactory
from policyd.plugins import PluginTypes

GROUP = "policyd.connectors"
_plugins = PluginTypes(GROUP, "connector")
reset = _plugins.reset
register = _plugins.register


class UnknownConnectorTypeError(LookupError):
    pass


def connector_types() -> dict[str, ConnectorFactory]:
    """Type name -> factory (see policyd.plugins)."""
    return _plugins.types()


def create_connector(type_name: str, context: ConnectorContext) -> Connector:
    """An instance of `type_name` configured by `context`.

    Raises:
        UnknownConnectorTypeError: no such type is installed.
    """
    return _plugins.factory(type_name, UnknownConnectorTypeError)(context)
