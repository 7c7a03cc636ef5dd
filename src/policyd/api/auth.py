"""Bearer authentication: opaque API tokens, or OIDC JWTs when an issuer is configured."""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, g, request
from flask_smorest import abort
from sqlalchemy.orm import Session

from policyd.api import context
from policyd.api.errors import error_body
from policyd.api.pipeline import after_response
from policyd.services.actor import Actor, Role
from policyd.services.errors import ForbiddenError, InvalidError
from policyd.services.refresh_ahead import REFRESH_AT, RefreshClaims
from policyd.services.tokens import PREFIX, TokenService, token_hash

if TYPE_CHECKING:
    from policyd.api.components import Components

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


def authenticate(
    header: str,
    components: Components,
    session: Callable[[], Session],
    now: datetime,
    defer: Callable[[Callable[[], None]], None] | None = None,
) -> Actor:
    """The caller behind an Authorization header, for every route (the Flask hook below and
    the decisions route of the request pipeline): `components` are the app's, `session` opens
    the database session a token not cached needs. With `defer`, a cached token due for its
    check is checked by the work handed to it (a request's, once its answer is sent).

    Raises:
        AuthError: 401 without valid credentials.
    """
    credential = bearer_credential(header)
    if credential is None:
        raise AuthError(401, "a bearer token is required (Authorization: Bearer <token>)")
    trusted_apps = components.settings.trusted_apps
    if credential.startswith(PREFIX):
        cache = components.token_cache
        hit, due = cache.lookup(credential, now, claim=defer is not None)
        if due and defer is not None:
            defer(functools.partial(_check_again, components, credential, cache.generation))
        if hit is None:
            generation = cache.generation
            token = TokenService(session()).authenticate(credential, now=now)
            if token is None:
                raise AuthError(401, "the token is unknown, revoked or expired")
            hit = cache.put(
                credential, token.principal, Role(token.role), token.expires_at, generation
            )
        principal, role = hit
        return Actor(principal, role, trusted=principal in trusted_apps)
    verifier = components.oidc
    if verifier is None:
        raise AuthError(401, "the token is not a policyd API token and OIDC is not configured")
    return verifier.actor(credential, set(trusted_apps))


def bearer_credential(header: str) -> str | None:
    """The credential of an `Authorization: Bearer <credential>` header; None for any other."""
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential


def _check_again(components: Components, credential: str, generation: int) -> None:
    """Check a cached token against the database again and keep (or drop) it: deferred work."""
    cache = components.token_cache
    try:
        with components.database.session() as session:
            token = TokenService(session).authenticate(credential, now=components.settings.clock())
    except Exception:
        cache.refresh_failed(credential)
        raise  # logged by the deferred work's runner; the entry lapses at its ttl
    if token is None:
        cache.forget(credential)  # revoked or expired meanwhile: the next call is refused
    else:
        cache.put(credential, token.principal, Role(token.role), token.expires_at, generation)


class TokenCache:
    """Valid tokens seen in the last `ttl` seconds, so most requests skip the token query.

    A revocation in this process evicts at once; in other processes it takes effect within
    `ttl` seconds (POLICYD_TOKEN_CACHE_SECONDS, default 5; 0 turns the cache off). Expiry is
    still checked on every request. A token used past `REFRESH_AT` of its ttl is due for a
    check: `lookup` hands it to one caller, who checks it once its answer is sent, so a token
    in use is checked about every `REFRESH_AT` times ttl seconds without a request waiting on it.
    """

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[str, tuple[str, Role, datetime | None, float]] = {}
        self._refreshing = RefreshClaims()  # keys handed out by `lookup`, not checked yet
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """Read this before reading a token, and pass it to `put`."""
        return self._generation

    def get(self, credential: str, now: datetime) -> tuple[str, Role] | None:
        return self.lookup(credential, now)[0]

    def lookup(
        self, credential: str, now: datetime, *, claim: bool = False
    ) -> tuple[tuple[str, Role] | None, bool]:
        """The cached (principal, role), None if none or lapsed, and, with `claim`, whether
        the caller should check the token again (then `put`, `forget` or `refresh_failed`)."""
        key = token_hash(credential)
        entry = self._entries.get(key)
        if entry is None:
            return None, False
        principal, role, expires_at, cached_at = entry
        age = time.monotonic() - cached_at
        if age > self.ttl or (expires_at and expires_at <= now):
            with self._lock:
                self._entries.pop(key, None)
            return None, False
        due = claim and age >= self.ttl * REFRESH_AT and self._refreshing.take(key)
        return (principal, role), due

    def put(
        self,
        credential: str,
        principal: str,
        role: Role,
        expires_at: datetime | None,
        generation: int | None = None,
    ) -> tuple[str, Role]:
        """Remember a token just checked, unless the cache was cleared since `generation`
        was read (a revocation may have come after the check)."""
        key = token_hash(credential)
        with self._lock:
            if self.ttl > 0 and (generation is None or generation == self._generation):
                if len(self._entries) > 10_000:
                    self._entries.clear()
                self._entries[key] = (principal, role, expires_at, time.monotonic())
        self._refreshing.settle(key)  # after the new entry: no second check meanwhile
        return principal, role

    def forget(self, credential: str) -> None:
        key = token_hash(credential)
        with self._lock:
            self._entries.pop(key, None)
        self._refreshing.settle(key)

    def refresh_failed(self, credential: str) -> None:
        self._refreshing.settle(token_hash(credential))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1
        self._refreshing.clear()


def init_app(app: Flask) -> None:
    @app.before_request
    def require_authentication():
        if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
            return None
        try:
            g.actor = authenticate(
                request.headers.get("Authorization", ""),
                context.components(),
                context.session,
                context.now(),
                defer=functools.partial(after_response, request.environ),
            )
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
    return check_role(context.actor(), roles)


def check_role(actor: Actor, roles: tuple[Role, ...]) -> Actor:
    """`actor` if it has one of `roles` (every route's role check, `guard`'s included).

    Raises:
        ForbiddenError: 403 otherwise.
    """
    if actor.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise ForbiddenError(f"this needs one of the roles: {allowed}")
    return actor


ALL_ROLES = tuple(Role)


def guard(*roles: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a view method (outermost): authorise, then refuse unknown query parameters,
    before any input is parsed, so a caller without the role learns nothing from its input.

    Every /v1 operation carries it (tests/api/test_authz_matrix.py checks). `roles` are who
    may call the operation at all; a view may narrow it further by the data (own records).
    """
    allowed = roles or ALL_ROLES

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)  # keeps flask-smorest's _apidoc
        def guarded(*args, **kwargs):
            require(*allowed)
            refuse_unknown_query()
            refuse_nul_in_path(kwargs)
            return view(*args, **kwargs)

        guarded.roles = allowed  # type: ignore[attr-defined]
        return guarded

    return decorate


def refuse_nul_in_path(values: dict[str, Any]) -> None:
    """422 naming a path id that holds a NUL character: no stored id has one, and PostgreSQL
    would refuse to compare it (SQLite would answer 404).

    Raises:
        InvalidError: naming the path parameter.
    """
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidError("an id may not contain the NUL character", field=name)


_PATH_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def refuse_unknown_query() -> None:
    """422 naming `query.<name>` for a query parameter the OpenAPI document does not declare
    for this operation (the document is the one list of what each operation takes).

    Raises:
        HTTPException: 422 naming every unknown parameter.
    """
    if not request.args or request.url_rule is None:
        return
    method = "get" if request.method == "HEAD" else request.method.lower()  # HEAD is GET's
    path = _PATH_VARIABLE.sub(r"{\1}", request.url_rule.rule)
    refused = unknown_query(current_app, path, method, request.args)
    if refused:
        abort(422, message=refused[0], messages=refused[1])


def unknown_query(
    app: Flask, path: str, method: str, names: Iterable[str]
) -> tuple[str, dict[str, Any]] | None:
    """(message, messages by location) for the query parameters among `names` that the
    OpenAPI document does not declare for `method` on `path`; None when there is none."""
    known = _declared_query(app).get((path, method), frozenset())
    unknown = sorted(set(names) - known)
    if not unknown:
        return None
    takes = ", ".join(sorted(known)) or "none"
    return (
        f"unknown query parameter(s): {', '.join(unknown)}; this takes: {takes}",
        {"query": {name: ["Unknown field."] for name in unknown}},
    )


def _declared_query(app: Flask) -> dict[tuple[str, str], frozenset[str]]:
    declared = context.components(app).declared_query
    if not declared:
        api = app.extensions["flask-smorest"]["apis"][""]["ext_obj"]
        for path, operations in api.spec.to_dict()["paths"].items():
            for method, operation in operations.items():
                if isinstance(operation, dict):
                    names = {
                        p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"
                    }
                    declared[(path, method)] = frozenset(names)
    return declared
