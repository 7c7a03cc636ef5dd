"""Notifier instances: the `notifiers:` list of the connectors file (connectors.yaml)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from policyd.connectors.config import InstanceConfig, read_instances, resolve_secrets
from policyd.notify.base import NotifierContext
from policyd.notify.registry import create_notifier, notifier_types


def load_notifiers(path: str | Path | None) -> dict[str, InstanceConfig]:
    """Configured notifier instances (the `notifiers:` list of the same file); none by default.

    Raises:
        ProblemsError: every problem as file:line.
    """
    return read_instances(path, "notifiers", notifier_types(), {})


class Notifiers:
    """Configured notifier instances; the first one configured sends every notification."""

    def __init__(
        self, instances: Mapping[str, InstanceConfig], environ: Mapping[str, str] | None = None
    ):
        self.instances = dict(instances)
        self._environ = {} if environ is None else environ
        self._default: Any = None
        self._lock = threading.Lock()

    def default(self) -> Any:
        """The notifier to use, or None when none is configured."""
        if not self.instances:
            return None
        with self._lock:
            if self._default is None:
                config = next(iter(self.instances.values()))
                context = NotifierContext(
                    config.name, config.settings, resolve_secrets(config, self._environ)
                )
                self._default = create_notifier(config.type, context)
            return self._default
