"""API tokens: created once in plain text, stored hashed, expiring, revoked, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.services.errors import InvalidError, NotFoundError
from policyd.services.tokens import PREFIX, TokenService, token_hash, token_state
from policyd.store.models import ApiToken, AuditRecord
from tests.services.conftest import ROOT


@pytest.fixture
def tokens(session) -> TokenService:
    return TokenService(session)


def actions(session) -> list[tuple[str, str]]:
    query = select(AuditRecord.action, AuditRecord.actor).order_by(AuditRecord.id)
    return [tuple(row) for row in session.execute(query)]


def test_create_returns_the_plain_text_once_and_stores_its_hash(session, tokens, clock):
    """The plain token is returned, prefixed; only its sha256 is stored; the creation is
    audited by the creating actor."""
    token, plain = tokens.create(ROOT, "portal", "app", now=clock(), description="CI")
    assert plain.startswith(PREFIX)
    stored = session.get(ApiToken, token.id)
    assert stored.token_hash == token_hash(plain) != plain
    assert (stored.principal, stored.role, stored.description) == ("portal", "app", "CI")
    assert actions(session) == [("token.created", "root")]


def test_authenticate_finds_the_live_token_only(tokens, clock):
    """The plain text authenticates its token; an unknown text does not."""
    token, plain = tokens.create(ROOT, "portal", "app", now=clock())
    assert tokens.authenticate(plain, now=clock()).id == token.id
    assert tokens.authenticate(PREFIX + "unknown", now=clock()) is None


def test_a_token_stops_working_when_it_expires(tokens, clock):
    """A token with an expiry authenticates until then and not from that instant on."""
    token, plain = tokens.create(ROOT, "portal", "app", now=clock(), expires_in=timedelta(hours=1))
    clock.advance(minutes=59)
    assert tokens.authenticate(plain, now=clock()) is not None
    clock.advance(minutes=1)
    assert tokens.authenticate(plain, now=clock()) is None
    assert token_state(token, clock()) == "expired"


def test_revoke_ends_the_token_and_is_audited_once(session, tokens, clock):
    """A revoked token no longer authenticates; the revocation is audited; revoking again
    changes nothing and writes no second record."""
    token, plain = tokens.create(ROOT, "portal", "app", now=clock())
    clock.advance(minutes=1)
    revoked = tokens.revoke(ROOT, token.id, now=clock())
    assert (revoked.revoked_at, token_state(revoked, clock())) == (clock(), "revoked")
    assert tokens.authenticate(plain, now=clock()) is None
    clock.advance(minutes=1)
    tokens.revoke(ROOT, token.id, now=clock())
    assert actions(session) == [("token.created", "root"), ("token.revoked", "root")]


def test_bad_input_names_the_field(tokens, clock):
    """An unknown role names `role`, an empty principal `principal`, an unknown token `id`."""
    with pytest.raises(InvalidError) as err:
        tokens.create(ROOT, "portal", "superuser", now=clock())
    assert err.value.field == "role"
    with pytest.raises(InvalidError) as err:
        tokens.create(ROOT, "", "app", now=clock())
    assert err.value.field == "principal"
    with pytest.raises(NotFoundError) as err:
        tokens.revoke(ROOT, "no-such-token", now=clock())
    assert err.value.field == "id"


def test_list_pages_tokens_in_creation_order(tokens, clock):
    """Tokens are listed oldest first, with the total."""
    for principal in ("a", "b", "c"):
        tokens.create(ROOT, principal, "user", now=clock())
        clock.advance(seconds=1)
    found, total = tokens.list(offset=1, limit=1)
    assert ([token.principal for token in found], total) == (["b"], 3)
