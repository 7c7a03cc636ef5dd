"""OIDC JWTs: issuer, audience, signature and expiry are checked; sub is the user."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from policyd.api import create_app
from policyd.api.context import components
from tests.conftest import POLICIES, empty_tables

ISSUER = "https://id.example.test"


@pytest.fixture(scope="module")
def keys():
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    evil = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(good.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    return good, evil, {"keys": [jwk]}


@pytest.fixture
def oidc_client(keys, database_url, clock):
    app = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": str(POLICIES),
            "POLICYD_CLOCK": clock,
            "POLICYD_AUTO_UPGRADE": True,
            "POLICYD_OIDC_ISSUER": ISSUER,
            "POLICYD_OIDC_AUDIENCE": "policyd",
            "POLICYD_OIDC_JWKS": json.dumps(keys[2]),
        }
    )
    yield app.test_client()
    components(app).decision_log.close()
    components(app).runtime.close()
    empty_tables(components(app).database)  # the next test on this database starts clean
    components(app).database.dispose()


def bearer(key, **claims) -> dict[str, str]:
    now = datetime.now(UTC)
    payload = {"iss": ISSUER, "aud": "policyd", "sub": "ada", "exp": now + timedelta(minutes=5)}
    payload.update(claims)
    token = jwt.encode(payload, key, algorithm="RS256", headers={"kid": "k1"})
    return {"Authorization": f"Bearer {token}"}


def test_valid_jwt_maps_sub_to_the_user(oidc_client, keys):
    """A valid token authenticates as its subject with the user role by default."""
    good = keys[0]
    response = oidc_client.post(
        "/v1/decisions",
        json={"package": "scope-a-readers", "subject": {"id": "ada"}},
        headers=bearer(good),
    )
    # Past authentication: ada is not in this directory, which is the next thing checked.
    assert response.status_code == 404 and "subject.id" in response.json["errors"]
    other = oidc_client.post(
        "/v1/decisions",
        json={"package": "scope-a-readers", "subject": {"id": "bob"}},
        headers=bearer(good),
    )
    assert other.status_code == 403  # a user asks only about themselves
    admin = oidc_client.get("/v1/audit", headers=bearer(good, policyd_role="admin"))
    assert admin.status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"iss": "https://evil.example.test"},
        {"aud": "someone-else"},
        {"exp": datetime.now(UTC) - timedelta(hours=1)},
        "wrong-key",
    ],
)
def test_invalid_jwts_are_401(oidc_client, keys, change):
    """Wrong issuer, audience, an expired token or a foreign signature give 401."""
    good, evil, _ = keys
    headers = bearer(evil) if change == "wrong-key" else bearer(good, **change)
    response = oidc_client.get("/v1/decisions", headers=headers)
    assert response.status_code == 401
    assert response.json["message"].startswith("invalid OIDC token")
