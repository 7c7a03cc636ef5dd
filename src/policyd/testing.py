"""Helpers for connector authors: the contract every connector must keep, as one check."""

from __future__ import annotations

from typing import Any

from policyd.connectors.base import Abilities, Connector, Target


def check_connector_contract(connector: Connector, target: Target) -> None:
    """Exercise `connector` against a real system and assert the contract.

    Grant and revoke (and grant_many/revoke_many, where a connector has them) must be
    idempotent, and `members` must show the effect of each. Run it against the real server
    your connector talks to (not a mock) with a user and a resource that exist there.

    Raises:
        AssertionError: naming the step that broke the contract.
        AbilityError: an optional ability is declared with the wrong shape.
    """
    assert isinstance(connector, Connector), "does not implement the Connector protocol"
    connector.health()
    connector.revoke(target)  # revoking what is absent is no error
    assert target.user_id not in connector.members(target.resource), "revoke left the member"
    connector.grant(target)
    connector.grant(target)  # granting twice is no error
    members = connector.members(target.resource)
    assert target.user_id in members, f"grant did not add {target.user_id!r}: {sorted(members)}"
    connector.revoke(target)
    connector.revoke(target)
    members = connector.members(target.resource)
    assert target.user_id not in members, f"revoke did not remove {target.user_id!r}"
    if Abilities.of(connector, connector.name).bulk:
        _check_bulk(connector, target)


def _check_bulk(connector: Any, target: Target) -> None:
    """The optional bulk methods: one result per target, in order, and the same effects."""
    results = list(connector.revoke_many([target]))
    assert results == [None], f"revoke_many of an absent member: {results}"
    results = list(connector.grant_many([target, target]))
    assert results == [None, None], f"grant_many of one target twice: {results}"
    members = connector.members(target.resource)
    assert target.user_id in members, f"grant_many did not add {target.user_id!r}"
    results = list(connector.revoke_many([target, target]))
    assert results == [None, None], f"revoke_many of one target twice: {results}"
    members = connector.members(target.resource)
    assert target.user_id not in members, f"revoke_many did not remove {target.user_id!r}"
