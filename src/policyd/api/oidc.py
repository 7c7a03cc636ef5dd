"""OIDC access tokens (JWTs) checked against a configured issuer, audience and JWKS."""

from __future__ import annotations

import json
from typing import Any

import jwt

from policyd.services.actor import Actor, Role

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class OidcVerifier:
    """Maps a valid JWT to an Actor: the subject claim is the directory user id.

    The role comes from `role_claim` (default `policyd_role`) and defaults to `user`.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | str | None = None,
        subject_claim: str = "sub",
        role_claim: str = "policyd_role",
        leeway: int = 30,
    ):
        self.issuer = issuer
        self.audience = audience
        self.subject_claim = subject_claim
        self.role_claim = role_claim
        self.leeway = leeway
        if jwks is not None:
            data = json.loads(jwks) if isinstance(jwks, str) else jwks
            keys = jwt.PyJWKSet.from_dict(data).keys
            self._static = {key.key_id: key for key in keys}
            self._client = None
        elif jwks_url:
            self._static = None
            self._client = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300)
        else:
            raise ValueError("OIDC needs POLICYD_OIDC_JWKS_URL or POLICYD_OIDC_JWKS")

    def _key(self, token: str):
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token).key
        kid = jwt.get_unverified_header(token).get("kid")
        if kid in self._static:
            return self._static[kid].key
        if kid is None and len(self._static) == 1:
            return next(iter(self._static.values())).key
        raise jwt.InvalidTokenError(f"no signing key {kid!r} in the JWKS")

    def actor(self, token: str, trusted_apps: set[str]) -> Actor:
        from policyd.api.auth import AuthError

        try:
            claims = jwt.decode(
                token,
                self._key(token),
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", self.subject_claim]},
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as err:
            raise AuthError(401, f"invalid OIDC token: {err}") from None
        try:
            role = Role(claims.get(self.role_claim, Role.USER.value))
        except ValueError:
            raise AuthError(403, f"unknown role in claim {self.role_claim!r}") from None
        principal = str(claims[self.subject_claim])
        return Actor(principal, role, trusted=principal in trusted_apps)
