"""One entry-point group of plugin types, loaded lazily once (connectors, notifiers).

Built-in types are registered through the same entry points as third-party ones;
POLICYD_DISABLE_PLUGIN_AUTOLOAD=1 loads only the built-ins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

BUILTIN_PREFIX = "policyd."
log = logging.getLogger(__name__)


class PluginTypes:
    """Type name -> factory for one entry-point group."""

    def __init__(self, group: str, what: str):
        self.group = group
        self.what = what  # "connector", "notifier": for messages
        self._types: dict[str, Callable[..., Any]] | None = None
        self._lock = threading.Lock()

    def types(self) -> dict[str, Callable[..., Any]]:
        """Loaded lazily once. A plugin that fails to load is logged, never raised."""
        with self._lock:
            if self._types is None:
                self._types = self._load()
            return dict(self._types)

    def _load(self) -> dict[str, Callable[..., Any]]:
        from policyd.settings import Settings

        only_builtins = Settings.from_env().disable_plugin_autoload
        found: dict[str, Callable[..., Any]] = {}
        for entry in entry_points(group=self.group):
            if only_builtins and not entry.value.startswith(BUILTIN_PREFIX):
                continue
            try:
                found[entry.name] = entry.load()
            except Exception:  # a broken plugin must not take the service down
                log.exception(
                    "%s plugin %s (%s) failed to load", self.what, entry.name, entry.value
                )
        return found

    def reset(self) -> None:
        """Forget loaded types (tests, and after installing a plugin at run time)."""
        with self._lock:
            self._types = None

    def register(self, type_name: str, factory: Callable[..., Any]) -> None:
        """Add a type by hand (tests and embedding); entry points are the normal way."""
        with self._lock:
            if self._types is None:
                self._types = self._load()
            self._types[type_name] = factory

    def factory(self, type_name: str, error: type[LookupError]) -> Callable[..., Any]:
        """The factory of `type_name`.

        Raises:
            error: no such type is installed, naming the installed ones.
        """
        found = self.types().get(type_name)
        if found is None:
            known = ", ".join(sorted(self.types())) or "none"
            raise error(f"unknown {self.what} type {type_name!r}; installed: {known}")
        return found


def unknown_settings(settings: Iterable[str], known: Iterable[str]) -> str | None:
    """The message for settings an instance was given that its type does not know (a typo in
    connectors.yaml), naming the known ones; None when all are known."""
    known = sorted(known)
    unknown = sorted(set(settings) - set(known))
    if not unknown:
        return None
    return f"unknown settings {', '.join(unknown)}; known: {', '.join(known)}"
