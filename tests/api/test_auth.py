"""The token cache: a token in use is checked again after an answer, never inside a request."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update

from policyd.api import auth
from policyd.api.auth import REFRESH_AT, TokenCache
from policyd.api.context import components
from policyd.services.actor import Role
from policyd.store.models import ApiToken

NOW = datetime(2026, 1, 1, tzinfo=UTC)
DECISION = {"package": "scope-a-readers", "subject": {"id": "someone"}}


class Monotonic:
    """time.monotonic for the token cache, moved by the test."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def monotonic(monkeypatch) -> Monotonic:
    clock = Monotonic()
    monkeypatch.setattr(auth.time, "monotonic", clock)
    return clock


def test_a_token_is_due_for_a_check_once_from_three_quarters_of_its_ttl(monotonic):
    cache = TokenCache(4.0)
    cache.put("pd_a", "ada", Role.USER, None)
    monotonic.value += 4.0 * REFRESH_AT - 0.01
    assert cache.lookup("pd_a", NOW, claim=True) == (("ada", Role.USER), False)
    monotonic.value += 0.02
    assert cache.lookup("pd_a", NOW) == (("ada", Role.USER), False)  # not claimed: not handed
    assert cache.lookup("pd_a", NOW, claim=True) == (("ada", Role.USER), True)
    assert cache.lookup("pd_a", NOW, claim=True) == (("ada", Role.USER), False)  # once
    cache.refresh_failed("pd_a")
    assert cache.lookup("pd_a", NOW, claim=True) == (("ada", Role.USER), True)  # again
    cache.put("pd_a", "ada", Role.USER, None)  # checked: a new life
    assert cache.lookup("pd_a", NOW, claim=True) == (("ada", Role.USER), False)
    monotonic.value += 4.01
    assert cache.lookup("pd_a", NOW, claim=True) == (None, False)  # past its ttl: gone


def test_a_check_that_read_before_a_revocation_here_does_not_bring_the_token_back(monotonic):
    cache = TokenCache(4.0)
    cache.put("pd_a", "ada", Role.USER, None)
    generation = cache.generation  # a deferred check starts reading...
    cache.clear()  # ...this process revokes a token meanwhile
    cache.put("pd_a", "ada", Role.USER, None, generation)  # what the check read
    assert cache.get("pd_a", NOW) is None


def test_a_token_revoked_elsewhere_is_refused_after_the_next_answers_check(
    app, client, token, monotonic
):
    """Past three quarters of its ttl, a request with a cached token is answered without
    reading it; once that answer is sent the token is checked, so a revocation by another
    process is refused from then on, before the ttl is over."""
    headers = token("ada", "app")
    assert client.post("/v1/decisions", json=DECISION, headers=headers).status_code in (200, 404)
    database = components(app).database
    with database.session() as session:  # another process revokes it
        session.execute(update(ApiToken).values(revoked_at=NOW))
        session.commit()
    ttl = components(app).token_cache.ttl
    monotonic.value += ttl * REFRESH_AT + 0.01
    with client.post("/v1/decisions", json=DECISION, headers=headers) as answered:
        assert answered.status_code != 401  # the cached token: no read inside the request
    refused = client.post("/v1/decisions", json=DECISION, headers=headers)
    assert refused.status_code == 401
    assert refused.json["message"] == "the token is unknown, revoked or expired"


def test_every_route_checks_a_due_token_after_its_answer(app, client, token, monotonic):
    headers = token("ada", "admin")
    assert client.get("/v1/users", headers=headers).status_code == 200
    with components(app).database.session() as session:
        session.execute(update(ApiToken).values(revoked_at=NOW))
        session.commit()
    monotonic.value += components(app).token_cache.ttl * REFRESH_AT + 0.01
    with client.get("/v1/users", headers=headers) as answered:
        assert answered.status_code == 200
    assert client.get("/v1/users", headers=headers).status_code == 401


def test_a_deferred_check_that_fails_leaves_the_token_to_its_ttl(
    app, client, token, monotonic, monkeypatch, caplog
):
    headers = token("ada", "app")
    assert client.post("/v1/decisions", json=DECISION, headers=headers).status_code != 401
    monotonic.value += components(app).token_cache.ttl * REFRESH_AT + 0.01

    def down(*_args, **_kwargs):
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(auth.TokenService, "authenticate", down)
    with client.post("/v1/decisions", json=DECISION, headers=headers) as answered:
        assert answered.status_code != 401
    assert "work deferred after a response failed" in caplog.text
    monkeypatch.undo()
    monkeypatch.setattr(auth.time, "monotonic", monotonic)
    real = auth.TokenService.authenticate
    checked: list[str] = []

    def counting(self, plain, *, now):
        checked.append(plain)
        return real(self, plain, now=now)

    monkeypatch.setattr(auth.TokenService, "authenticate", counting)
    # Handed out again to the next caller, who checks it (the database is back).
    with client.post("/v1/decisions", json=DECISION, headers=headers) as answered:
        assert answered.status_code != 401
        assert checked == []  # not inside the request
    assert checked == [headers["Authorization"][7:]]  # once its answer was sent
    assert (
        components(app).token_cache.lookup(headers["Authorization"][7:], NOW, claim=True)[1]
        is False
    )
