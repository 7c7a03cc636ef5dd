"""Optional connector abilities: declared by their methods, checked once, recorded."""

from __future__ import annotations

import pytest

from policyd.connectors.base import Abilities, AbilityError
from policyd.connectors.directory import DirectoryConnector
from policyd.connectors.webhook import WebhookConnector


class Plain:
    name = "plain"

    def grant(self, target): ...

    def revoke(self, target): ...

    def members(self, resource):
        return set()

    def health(self): ...


class Everything(Plain):
    reconcilable = False

    def grant_many(self, targets):
        return [None] * len(targets)

    def revoke_many(self, targets):
        return [None] * len(targets)

    def send(self, event, payload, event_id):
        return True

    def disable_user(self, user_id): ...

    def delete_user(self, user_id): ...

    def close(self): ...


def test_a_connector_with_only_the_contract_has_no_optional_ability():
    """grant, revoke, members and health alone: nothing optional, reconcilable."""
    assert Abilities.of(Plain(), "plain") == Abilities()


def test_every_declared_ability_is_recorded():
    """Each optional method (and a false `reconcilable`) shows in the recorded abilities."""
    assert Abilities.of(Everything(), "all") == Abilities(
        bulk=True,
        receives_events=True,
        disables_users=True,
        deletes_users=True,
        closes=True,
        reconcilable=False,
    )


def test_the_built_in_connectors_declare_what_they_do():
    """The directory works in bulk; a webhook without members_url cannot be reconciled."""
    directory = DirectoryConnector.__new__(DirectoryConnector)
    assert Abilities.of(directory, "directory").bulk
    webhook = WebhookConnector("hook", sender=None)
    abilities = Abilities.of(webhook, "hook")
    assert abilities.receives_events and not abilities.reconcilable


class WrongSend(Plain):
    def send(self, event):  # policyd passes (event, payload, event_id)
        return True


class WrongDisable(Plain):
    def disable_user(self, user_id, reason): ...


class HalfBulk(Plain):
    def grant_many(self, targets):
        return [None] * len(targets)


class CloseIsData(Plain):
    close = True


class OddReconcilable(Plain):
    reconcilable = "sometimes"


@pytest.mark.parametrize(
    ("connector", "message"),
    [
        (WrongSend(), "connector 'bad': send(event) cannot be called as send(event, payload"),
        (WrongDisable(), "connector 'bad': disable_user(user_id, reason) cannot be called as"),
        (HalfBulk(), "connector 'bad' has grant_many but not revoke_many"),
        (CloseIsData(), "connector 'bad': close is not a method; expected close()"),
        (OddReconcilable(), "connector 'bad': reconcilable must be true or false"),
    ],
    ids=["send", "disable_user", "half-bulk", "close", "reconcilable"],
)
def test_an_ability_of_the_wrong_shape_is_refused_naming_connector_and_method(connector, message):
    """A declared ability whose method is missing, not callable or takes other arguments
    is an AbilityError (never retryable) naming the connector and the method."""
    with pytest.raises(AbilityError) as refused:
        Abilities.of(connector, "bad")
    assert message in str(refused.value)
    assert not refused.value.retryable


def test_extra_optional_parameters_are_fine():
    """A method that takes more, with defaults, can still be called as policyd calls it."""

    class Flexible(Plain):
        def send(self, event, payload, event_id, *, timeout=5.0):
            return True

    assert Abilities.of(Flexible(), "flexible").receives_events
