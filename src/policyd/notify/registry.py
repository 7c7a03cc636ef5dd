"""Notifier types, discovered once from the `policyd.notifiers` entry-point group.

Works like the connector registry: built-ins are entry points too, and
POLICYD_DISABLE_PLUGIN_AUTOLOAD=1 loads only the built-ins.
"""

from __future__ import annotations

import logging
import os
import threading
from importlib.metadata import entry_points

from policyd.notify.base import Notifier, NotifierContext, NotifierFactory

GROUP = "policyd.notifiers"
BUILTIN_PREFIX = "policyd."
log = logging.getLogger(__name__)

_types: dict[str, NotifierFactory] | None = None
_lock = threading.Lock()


def notifier_types() -> dict[str, NotifierFactory]:
    """Type name -> factory, loaded lazily once. A plugin that fails to load is logged."""
    global _types
    with _lock:
        if _types is None:
            _types = _load()
        return dict(_types)


def _load() -> dict[str, NotifierFactory]:
    only_builtins = os.environ.get("POLICYD_DISABLE_PLUGIN_AUTOLOAD") == "1"
    found: dict[str, NotifierFactory] = {}
    for entry in entry_points(group=GROUP):
        if only_builtins and not entry.value.startswith(BUILTIN_PREFIX):
            continue
        try:
            found[entry.name] = entry.load()
        except Exception:  # a broken plugin must not take the service down
            log.exception("notifier plugin %s (%s) failed to load", entry.name, entry.value)
    return found


def reset() -> None:
    """Forget loaded types (tests, and after installing a plugin at run time)."""
    global _types
    with _lock:
        _types = None


def register(type_name: str, factory: NotifierFactory) -> None:
    """Add a type by hand (tests and embedding); entry points are the normal way."""
    global _types
    with _lock:
        if _types is None:
            _types = _load()
        _types[type_name] = factory


class UnknownNotifierTypeError(LookupError):
    pass


def create_notifier(type_name: str, context: NotifierContext) -> Notifier:
    """An instance of `type_name` configured by `context`.

    Raises:
        UnknownNotifierTypeError: no such type is installed.
    """
    factory = notifier_types().get(type_name)
    if factory is None:
        known = ", ".join(sorted(notifier_types())) or "none"
        raise UnknownNotifierTypeError(f"unknown notifier type {type_name!r}; installed: {known}")
    return factory(context)
