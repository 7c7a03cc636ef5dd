"""Bearer authentication: opaque API tokens, or OIDC JWTs when an issuer is configured."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from flask import Flask, current_app, g, request

from policyd.api import context
from policyd.api.errors import error_body
from policyd.services.actor import Actor, Role
from policyd.services.tokens import PREFIX, TokenService, token_hash

PUBLIC_ENDPOINTS = frozenset(
    {
        "healthz",
        "readyz",
        "metrics",
        "api-docs.openapi_json",
        "api-docs.openapi_swagger_ui",
        "static",
    }
)


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


def authenticate() -> Actor:
    """The caller behind the Authorization header.

    Raises:
        AuthError: 401 without valid credentials.
    """
    credential = bearer_credential(request.headers.get("Authorization", ""))
    if credential is None:
        raise AuthError(401, "a bearer token is required (Authorization: Bearer <token>)")
    trusted_apps = set(context.settings().trusted_apps)
    if credential.startswith(PREFIX):
        cache: TokenCache = current_app.extensions["policyd.token_cache"]
        now = context.now()
        hit = cache.get(credential, now)
        if hit is None:
            token = TokenService(context.session()).authenticate(credential, now=now)
            if token is None:
                raise AuthError(401, "the token is unknown, revoked or expired")
            hit = cache.put(credential, token.principal, Role(token.role), token.expires_at)
        principal, role = hit
        return Actor(principal, role, trusted=principal in trusted_apps)
    verifier = current_app.extensions.get("policyd.oidc")
    if verifier is None:
        raise AuthError(401, "the token is not a policyd API token and OIDC is not configured")
    return verifier.actor(credential, trusted_apps)


def bearer_credential(header: str) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header; None for any other."""
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential


class TokenCache:
    """Valid tokens seen in the last `ttl` seconds, so most requests skip the token query.

    A revocation in this process evicts at once; in other processes it takes effect within
    `ttl` seconds (POLICYD_TOKEN_CACHE_SECONDS, default 5; 0 turns the cache off). Expiry is
    still checked on every request.
    """

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[str, tuple[str, Role, datetime | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, credential: str, now: datetime) -> tuple[str, Role] | None:
        key = token_hash(credential)
        entry = self._entries.get(key)
        if entry is None:
            return None
        principal, role, expires_at, cached_at = entry
        if time.monotonic() - cached_at > self.ttl or (expires_at and expires_at <= now):
            with self._lock:
                self._entries.pop(key, None)
            return None
        return principal, role

    def put(
        self, credential: str, principal: str, role: Role, expires_at: datetime | None
    ) -> tuple[str, Role]:
        if self.ttl > 0:
            with self._lock:
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[token_hash(credential)] = (
                    principal,
                    role,
                    expires_at,
                    time.monotonic(),
                )
        return principal, role

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def init_app(app: Flask) -> None:
    app.extensions["policyd.token_cache"] = TokenCache(
        app.extensions["policyd.settings"].token_cache_seconds
    )

    @app.before_request
    def require_authentication():
        if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return None
        try:
            g.actor = authenticate()
        except AuthError as err:
            response = current_app.json.response(error_body(err.status, err.message))
            response.status_code = err.status
            response.headers["WWW-Authenticate"] = 'Bearer realm="policyd"'
            return response
        return None


def require(*roles: Role) -> Actor:
    """The current actor if it has one of `roles`.

    Raises:
        ForbiddenError: 403 otherwise.
    """
    from policyd.services.errors import ForbiddenError

    current = context.actor()
    if current.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise ForbiddenError(f"this needs one of the roles: {allowed}")
    return current
