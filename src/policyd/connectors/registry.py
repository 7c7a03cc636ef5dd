"""Connector types, discovered once from the `policyd.connectors` entry-point group.

Built-in types are registered through the same entry points (see pyproject.toml) as
third-party ones. POLICYD_DISABLE_PLUGIN_AUTOLOAD=1 loads only the built-ins.
"""

from __future__ import annotations

import logging
import os
import threading
from importlib.metadata import entry_points

from policyd.connectors.base import Connector, ConnectorContext, ConnectorFactory

GROUP = "policyd.connectors"
BUILTIN_PREFIX = "policyd."
log = logging.getLogger(__name__)

_types: dict[str, ConnectorFactory] | None = None
_lock = threading.Lock()


def connector_types() -> dict[str, ConnectorFactory]:
    """Type name -> factory, loaded lazily once. A plugin that fails to load is logged."""
    global _types
    with _lock:
        if _types is None:
            _types = _load()
        return dict(_types)


def _load() -> dict[str, ConnectorFactory]:
    only_builtins = os.environ.get("POLICYD_DISABLE_PLUGIN_AUTOLOAD") == "1"
    found: dict[str, ConnectorFactory] = {}
    for entry in entry_points(group=GROUP):
        if only_builtins and not entry.value.startswith(BUILTIN_PREFIX):
            continue
        try:
            found[entry.name] = entry.load()
        except Exception:  # a broken plugin must not take the service down
            log.exception("connector plugin %s (%s) failed to load", entry.name, entry.value)
    return found


def reset() -> None:
    """Forget loaded types (tests, and after installing a plugin at run time)."""
    global _types
    with _lock:
        _types = None


def register(type_name: str, factory: ConnectorFactory) -> None:
    """Add a type by hand (tests and embedding); entry points are the normal way."""
    global _types
    with _lock:
        if _types is None:
            _types = _load()
        _types[type_name] = factory


class UnknownConnectorTypeError(LookupError):
    pass


def create_connector(type_name: str, context: ConnectorContext) -> Connector:
    """An instance of `type_name` configured by `context`.

    Raises:
        UnknownConnectorTypeError: no such type is installed.
    """
    factory = connector_types().get(type_name)
    if factory is None:
        known = ", ".join(sorted(connector_types())) or "none"
        raise UnknownConnectorTypeError(f"unknown connector type {type_name!r}; installed: {known}")
    return factory(context)
