"""Provisioning connectors: the contract, the registry of types, configured instances."""

from policyd.connectors.base import Connector, ConnectorContext, ConnectorError, Target
from policyd.connectors.registry import connector_types, create_connector

__all__ = [
    "Connector",
    "ConnectorContext",
    "ConnectorError",
    "Target",
    "connector_types",
    "create_connector",
]
