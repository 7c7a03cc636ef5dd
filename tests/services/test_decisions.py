"""services/decisions.py: who may ask for a decision (the one check, before any lookup)."""

from __future__ import annotations

import pytest

from policyd.services.actor import Actor, Role
from policyd.services.decisions import DECIDERS, authorize
from policyd.services.errors import ForbiddenError


@pytest.mark.parametrize("role", [Role.APP, Role.ADMIN])
def test_apps_and_admins_may_ask_about_anyone(role):
    """An app or an admin may ask for a decision about any subject."""
    authorize(Actor("caller", role), "someone")


def test_a_user_may_ask_about_themselves_only():
    """A user asking about someone else is refused, naming subject.id."""
    authorize(Actor("ada", Role.USER), "ada")
    with pytest.raises(ForbiddenError) as refused:
        authorize(Actor("ada", Role.USER), "bob")
    assert refused.value.field == "subject.id"


def test_auditors_cannot_ask():
    """Auditors read decisions; they cannot ask for one."""
    with pytest.raises(ForbiddenError):
        authorize(Actor("aud", Role.AUDITOR), "aud")


def test_the_deciders_are_every_role_but_the_auditor():
    """DECIDERS, which the API's guard admits, is every role except the auditor."""
    assert set(DECIDERS) == set(Role) - {Role.AUDITOR}
