"""Connector types, discovered once from the `policyd.connectors` entry-point group, with the
optional abilities their factories declare (checked once per type)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from policyd.connectors.base import (
    AbilityError,
    Connector,
    ConnectorContext,
    ConnectorFactory,
    EventTakingFactory,
    ResourceChecker,
    check_method,
)
from policyd.plugins import PluginTypes

GROUP = "policyd.connectors"
_plugins = PluginTypes(GROUP, "connector")


class UnknownConnectorTypeError(LookupError):
    pass


@dataclass(frozen=True)
class TypeAbilities:
    """What a connector type's factory declares, known without creating an instance."""

    takes_events: bool = False  # its instances receive lifecycle events (EventTakingFactory)
    check_resource: Callable[[str, str], str | None] | None = None  # ResourceChecker

    @classmethod
    def of(cls, factory: object, type_name: str) -> TypeAbilities:
        """Check and record what `factory` declares.

        Raises:
            AbilityError: naming the type and the attribute that is wrong.
        """
        who = f"connector type {type_name!r}"
        takes_events = False
        if isinstance(factory, EventTakingFactory):
            takes_events = factory.takes_events
            if not isinstance(takes_events, bool):
                raise AbilityError(f"{who}: takes_events must be true or false")
        check = None
        if isinstance(factory, ResourceChecker):
            check_method(factory, "check_resource", ResourceChecker, who)
            check = factory.check_resource
        return cls(takes_events=takes_events, check_resource=check)


_abilities: dict[str, TypeAbilities] = {}
_abilities_lock = threading.Lock()


def reset() -> None:
    """Forget loaded types and their abilities (tests, and after installing a plugin)."""
    _plugins.reset()
    with _abilities_lock:
        _abilities.clear()


def register(type_name: str, factory: ConnectorFactory) -> None:
    """Add a type by hand (tests and embedding); entry points are the normal way."""
    _plugins.register(type_name, factory)
    with _abilities_lock:
        _abilities.pop(type_name, None)


def connector_types() -> dict[str, ConnectorFactory]:
    """Type name -> factory (see policyd.plugins)."""
    return _plugins.types()


def type_abilities(type_name: str) -> TypeAbilities:
    """The abilities `type_name`'s factory declares, checked the first time it is asked for;
    an unknown type has none.

    Raises:
        AbilityError: the factory declares one with the wrong shape.
    """
    with _abilities_lock:
        known = _abilities.get(type_name)
    if known is not None:
        return known
    factory = connector_types().get(type_name)
    found = TypeAbilities() if factory is None else TypeAbilities.of(factory, type_name)
    with _abilities_lock:
        _abilities[type_name] = found
    return found


def create_connector(type_name: str, context: ConnectorContext) -> Connector:
    """An instance of `type_name` configured by `context`.

    Raises:
        UnknownConnectorTypeError: no such type is installed.
    """
    return _plugins.factory(type_name, UnknownConnectorTypeError)(context)


def takes_events(type_name: str) -> bool:
    """Whether connectors of `type_name` take lifecycle events (their factory has a true
    `takes_events`, and their instances `send(event, payload, event_id)`)."""
    return type_abilities(type_name).takes_events


def resource_problem(type_name: str, resource: str, role: str) -> str | None:
    """Why connectors of `type_name` could never work with `resource` and `role`, or None.

    A factory may have a `check_resource(resource, role)` returning such a message;
    publishing a bundle reports it at the resource's line. Types without one accept anything.
    """
    try:
        check = type_abilities(type_name).check_resource
    except AbilityError as err:
        return str(err)
    return check(resource, role) if check is not None else None
