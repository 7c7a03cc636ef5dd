"""Connector instances from a YAML file; secrets come from environment variables only."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from policyd.connectors.base import (
    Abilities,
    AbilityError,
    Connector,
    ConnectorContext,
    ConnectorError,
)
from policyd.connectors.registry import (
    connector_types,
    create_connector,
    takes_events,
    type_abilities,
)
from policyd.rules.apiversion import ApiVersion
from policyd.rules.source import Problem, ProblemsError, flatten_messages, parse_document

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
BUILTIN = {"directory": "directory"}  # instance name -> type, always present


@dataclass(frozen=True)
class InstanceConfig:
    name: str
    type: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)  # secret name -> env variable


class _InstanceSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Regexp(NAME, error="not a valid name"))
    type = fields.String(required=True)
    settings = fields.Dict(keys=fields.String(), load_default=dict)
    secrets = fields.Dict(
        keys=fields.String(),
        values=fields.String(
            validate=validate.Regexp(
                ENV_NAME, error="name an environment variable, e.g. LDAP_PASSWORD"
            )
        ),
        load_default=dict,
        metadata={"description": "secret name -> environment variable holding it"},
    )


class _FileSchema(Schema):
    class Meta:
        unknown = RAISE

    api_version = ApiVersion()
    connectors = fields.List(fields.Nested(_InstanceSchema), load_default=list)
    notifiers = fields.List(fields.Nested(_InstanceSchema), load_default=list)


def load_instances(path: str | Path | None) -> dict[str, InstanceConfig]:
    """Configured connector instances plus the built-in `directory`.

    Raises:
        ProblemsError: every problem as file:line (unknown type, duplicate name, bad keys, a
            type whose factory declares an optional ability with the wrong shape).
    """
    builtins = {name: InstanceConfig(name, kind) for name, kind in BUILTIN.items()}
    return read_instances(path, "connectors", connector_types(), builtins, type_abilities)


def read_instances(
    path: str | Path | None,
    section: str,
    types: Mapping[str, Any],
    builtins: dict,
    check_type: Callable[[str], object] | None = None,
) -> dict[str, InstanceConfig]:
    """Instances of `section` read from `path`, over `builtins`; `check_type(type name)`
    raises AbilityError for a type that cannot be used."""
    instances = dict(builtins)
    if not path:
        return instances
    path = Path(path)
    try:
        document = parse_document(path.read_text(encoding="utf-8"), str(path))
    except OSError as err:
        raise ProblemsError([Problem(str(path), 0, f"cannot read: {err}")]) from None
    try:
        data = _FileSchema().load(document.data if isinstance(document.data, dict) else {})
    except ValidationError as err:
        raise ProblemsError(
            [document.problem(p, m) for p, m in flatten_messages(err.messages)]
        ) from None
    problems = []
    for index, item in enumerate(data[section]):
        where = (section, index)
        if item["type"] not in types:
            known = ", ".join(sorted(types))
            message = f"unknown type {item['type']!r}; installed: {known}"
            problems.append(document.problem((*where, "type"), message))
        elif check_type is not None:
            try:
                check_type(item["type"])
            except AbilityError as err:
                problems.append(document.problem((*where, "type"), f"{item['name']!r}: {err}"))
        if item["name"] in instances and item["name"] not in builtins:
            problems.append(document.problem((*where, "name"), f"duplicate name {item['name']!r}"))
        instances[item["name"]] = InstanceConfig(**item)
    if problems:
        raise ProblemsError(problems)
    return instances


def resolve_secrets(config: InstanceConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The instance's secrets read from the environment.

    Raises:
        ConnectorError: a variable is not set (not retryable until it is).
    """
    secrets = {}
    for secret, variable in config.secrets.items():
        if variable not in environ:
            raise ConnectorError(
                f"{config.name!r}: environment variable {variable} is not set", retryable=False
            )
        secrets[secret] = environ[variable]
    return secrets


class Connectors:
    """The configured instances, created lazily once, each with its abilities checked and
    recorded then; missing secrets or a malformed ability fail the instance."""

    def __init__(
        self,
        instances: Mapping[str, InstanceConfig],
        memberships: Any = None,
        environ: Mapping[str, str] | None = None,
    ):
        self.instances = dict(instances)
        self._memberships = memberships
        self._environ = {} if environ is None else environ
        self._created: dict[str, Connector] = {}
        self._abilities: dict[str, Abilities] = {}
        self._listeners: frozenset[str] | None = None
        self._lock = threading.Lock()

    def types(self) -> dict[str, str]:
        """Instance name -> connector type."""
        return {name: config.type for name, config in self.instances.items()}

    def listeners(self) -> frozenset[str]:
        """The instances that take lifecycle events (webhooks), known without creating them
        (worked out once: the instances are fixed)."""
        if self._listeners is None:
            self._listeners = frozenset(
                name for name, config in self.instances.items() if takes_events(config.type)
            )
        return self._listeners

    def get(self, name: str) -> Connector:
        """The instance called `name`.

        Raises:
            KeyError: no such instance is configured.
            ConnectorError: a secret is missing (not retryable until configured).
            AbilityError: the instance declares an optional ability with the wrong shape,
                or its type takes events and it has no `send`.
        """
        with self._lock:
            if name not in self._created:
                config = self.instances[name]
                connector = create_connector(config.type, self._context(config))
                abilities = Abilities.of(connector, name)
                if type_abilities(config.type).takes_events and not abilities.receives_events:
                    raise AbilityError(f"connector {name!r} takes events but has no send")
                self._abilities[name] = abilities
                self._created[name] = connector
            return self._created[name]

    def abilities(self, name: str) -> Abilities:
        """The optional abilities of the instance called `name` (created if need be).

        Raises:
            KeyError, ConnectorError: as `get`.
        """
        self.get(name)
        return self._abilities[name]

    def close(self) -> None:
        """Close every created instance that holds connections (LDAP pools, HTTP clients)."""
        with self._lock:
            created, self._created = self._created, {}
            abilities, self._abilities = self._abilities, {}
        for name, connector in created.items():
            if abilities[name].closes:
                connector.close()

    def _context(self, config: InstanceConfig) -> ConnectorContext:
        secrets = resolve_secrets(config, self._environ)
        return ConnectorContext(
            name=config.name,
            settings=config.settings,
            secrets=secrets,
            memberships=self._memberships,
        )
