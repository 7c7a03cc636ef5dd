"""Helpers for connector authors: the contract every connector must keep, as one check."""

from __future__ import annotations

from policyd.connectors.base import Connector, Target


def check_connector_contract(connector: Connector, target: Target) -> None:
    """Exercise `connector` against a real system and assert the contract.

    Grant and revoke must be idempotent, and `members` must show the effect of each. Run it
    against the real server your connector talks to (not a mock) with a user that exists
    there and a resource that exists there.

    Raises:
        AssertionError: naming the step that broke the contract.
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
