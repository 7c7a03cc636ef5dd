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


def takes_events(type_name: str) -> bool:
    """Whether connectors of `type_name` take lifecycle events (their factory says so with a
    true `takes_events` attribute, and their instances have `send(event, payload, event_id)`)."""
    return bool(getattr(connector_types().get(type_name), "takes_events", False))


def resource_problem(type_name: str, resource: str, role: str) -> str | None:
    """Why connectors of `type_name` could never work with `resource` and `role`, or None.

    A factory may have a `check_resource(resource, role)` attribute returning such a message;
    publishing a bundle reports it at the resource's line. Types without one accept anything.
    """
    check = getattr(connector_types().get(type_name), "check_resource", None)
    return check(resource, role) if check is not None else None
