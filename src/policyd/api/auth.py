"""Bearer authentication: opaque API tokens, or OIDC JWTs when an issuer is configured."""

from __future__ import annotations

from flask import Flask, current_app, g, request

from policyd.api import context
from policyd.api.errors import error_body
from policyd.services.actor import Actor, Role
from policyd.services.tokens import PREFIX, TokenService

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
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthError(401, "a bearer token is required (Authorization: Bearer <token>)")
    credential = credential.strip()
    trusted_apps = set(current_app.config["POLICYD_TRUSTED_APPS"])
    if credential.startswith(PREFIX):
        token = TokenService(context.session()).authenticate(credential, now=context.now())
        if token is None:
            raise AuthError(401, "the token is unknown, revoked or expired")
        return Actor(token.principal, Role(token.role), trusted=token.principal in trusted_apps)
    verifier = current_app.extensions.get("policyd.oidc")
    if verifier is None:
        raise AuthError(401, "the token is not a policyd API token and OIDC is not configured")
    return verifier.actor(credential, trusted_apps)


def init_app(app: Flask) -> None:
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
