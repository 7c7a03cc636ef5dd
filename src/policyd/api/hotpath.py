"""POST /v1/decisions answered straight from WSGI when the request is plain; Flask does the rest.

Flask, flask-smorest and the app's hooks cost more per decision than the decision itself (a
request context, routing, four view wrappers, three hooks, a Response object). This middleware
answers the common request without them, through the same functions the view uses: the token
cache, the parser's shortcut, DecisionService.decide (subject cache, rules, decision log) and
decision_json. It answers only when every step succeeds as the view's would; any other request,
and every error, goes to Flask with its body restored, so Flask answers it word for word as it
always has. tests/api/test_hotpath.py holds both paths to the same answers.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from policyd.api.auth import TokenCache, bearer_credential
from policyd.api.decisions import DECIDERS, decision_json
from policyd.api.parser import decision_body, load_json
from policyd.domain import RequestOptions
from policyd.logs import accepted_request_id, new_request_id, request_id
from policyd.services.actor import Actor
from policyd.services.decisions import DecisionService
from policyd.services.tokens import PREFIX

PATH = "/v1/decisions"
ENDPOINT = "decisions.Decisions"  # the view's endpoint, as the metrics name it
ROLES = frozenset(DECIDERS)  # whom Decisions.post admits
MAX_BODY = 64 * 1024  # larger bodies are no plain decision; Flask applies its own limit
# Flask settings under which Flask could answer differently (host checks): the hot path then
# steps aside. A body over MAX_CONTENT_LENGTH goes to Flask, which answers 413.
_FLASK_CHECKS = ("SERVER_NAME", "TRUSTED_HOSTS")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class DecisionHotPath:
    """WSGI middleware in front of the Flask app (`app.wsgi_app`); see the module docstring."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp):
        self.app = app
        self.wsgi_app = wsgi_app
        self.settings = app.extensions["policyd.settings"]
        self.enabled = self.settings.decision_hotpath
        extensions = app.extensions
        self._tokens: TokenCache = extensions["policyd.token_cache"]
        self._metrics = extensions["policyd.metrics"]
        # Label children, bound on first use as the Flask hooks bind theirs (a child made
        # early would export a zero series, and under PROMETHEUS_MULTIPROC_DIR read its start
        # value too early).
        self._children: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        if (
            environ.get("PATH_INFO") != PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or not self.enabled
        ):
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        body = _plain_body(environ, self.app.config)
        if body is None:
            return self.wsgi_app(environ, start_response)
        rid = accepted_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        token = request_id.set(rid)
        try:
            answer = self._answer(environ, body)
        finally:
            request_id.reset(token)
        if answer is None:
            environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the same bytes again
            return self.wsgi_app(environ, start_response)
        outcome, payload = answer
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                ("X-Request-ID", rid),
            ],
        )
        self._child("decisions", outcome).inc()
        self._child("latency", ENDPOINT, "POST").observe(time.perf_counter() - started)
        return [payload]

    def _child(self, metric: str, *labels: str) -> Any:
        key = f"{metric}:{':'.join(labels)}"
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metrics[metric].labels(*labels)
        return child

    def _answer(self, environ: dict[str, Any], body: bytes) -> tuple[str, bytes] | None:
        """(outcome, response body) as the view would answer 200; None: leave it to Flask."""
        config, extensions = self.app.config, self.app.extensions
        sync = extensions["policyd.sync"]
        if sync.due:
            return None  # Flask's request syncs, and answers as it must if that fails
        opened: list[Session] = []

        def session() -> Session:
            opened.append(extensions["policyd.db"].session())
            return opened[-1]

        try:
            now = self.settings.clock()
            actor = self._actor(environ.get("HTTP_AUTHORIZATION", ""), now, config)
            if actor is None or actor.role not in ROLES:
                return None
            # As the parser reads a body (load_json), and only bodies its shortcut takes.
            data = decision_body(load_json(body))
            if data is None:
                return None
            service = DecisionService(
                session,
                extensions["policyd.runtime"],
                log=extensions["policyd.decision_log"],
                subjects=extensions["policyd.subjects"],
            )
            subject = data["subject"]
            logged = service.decide(
                actor,
                data["package"],
                subject.id,
                subject,
                data["request"] or RequestOptions(),
                now=now,
            )
        except Exception:
            # Nothing was logged: Flask decides again and answers the error (401, 403, 404,
            # 422, 500) with its own handlers and log lines.
            return None
        finally:
            for each in opened:
                each.close()
        payload = (decision_json(logged) + "\n").encode("ascii")
        return logged.decision.outcome.value, payload

    def _actor(self, header: str, now, config) -> Actor | None:
        """The caller of a bearer API token this process checked recently; None otherwise
        (no token, an OIDC token, one not cached: Flask authenticates those)."""
        credential = bearer_credential(header)
        if credential is None or not credential.startswith(PREFIX):
            return None
        hit = self._tokens.get(credential, now)
        if hit is None:
            return None
        principal, role = hit
        return Actor(principal, role, trusted=principal in self.settings.trusted_apps)


def _plain_body(environ: dict[str, Any], config: Any) -> bytes | None:
    """The JSON body of a request Flask would read as this does; None: let Flask read it."""
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type != "application/json" and not content_type.lower().startswith(
        "application/json;"
    ):
        return None
    length = environ.get("CONTENT_LENGTH", "")
    if (
        not (length.isascii() and length.isdigit())
        or int(length) > min(MAX_BODY, config.get("MAX_CONTENT_LENGTH") or MAX_BODY)
        or "HTTP_TRANSFER_ENCODING" in environ
        or any(config.get(name) for name in _FLASK_CHECKS)
    ):
        return None
    return environ["wsgi.input"].read(int(length))
