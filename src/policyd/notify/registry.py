"""Notifier types, discovered once from the `policyd.notifiers` entry-point group."""

from __future__ import annotations

from policyd.notify.base import Notifier, NotifierContext, NotifierFactory
from policyd.plugins import PluginTypes

GROUP = "policyd.notifiers"
_plugins = PluginTypes(GROUP, "notifier")
reset = _plugins.reset
register = _plugins.register


class UnknownNotifierTypeError(LookupError):
    pass


def notifier_types() -> dict[str, NotifierFactory]:
    """Type name -> factory (see policyd.plugins)."""
    return _plugins.types()


def create_notifier(type_name: str, context: NotifierContext) -> Notifier:
    """An instance of `type_name` configured by `context`.

    Raises:
        UnknownNotifierTypeError: no such type is installed.
    """
    return _plugins.factory(type_name, UnknownNotifierTypeError)(context)
