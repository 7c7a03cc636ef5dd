"""The one request pipeline: a WSGI middleware around every route (id, limits, timing)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, Response

from policyd import logs
from policyd.api.errors import json_response, too_large_body

HEADER = "X-Request-ID"
DECISIONS = ("decisions.Decisions", "POST")  # the endpoint whose answers count by outcome
_OUTCOME = "policyd.decision_outcome"  # environ key the decisions view writes its outcome to
_AFTER = "policyd.after_response"  # environ key: work to run once the answer is sent

_log = logging.getLogger(__name__)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Step = Callable[[dict[str, Any]], Response | None]  # an app-wide concern: None to go on


class PolicydFlask(Flask):
    """Flask, minus a per-call cost: whether a view or hook is a coroutine is looked up once
    per function, not on each of the dozen calls a request makes (inspect's checks)."""

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        key = getattr(func, "__func__", func)  # a MethodView's bound method: a new object
        known = self._sync_functions.get(key)
        if known is None:
            known = self._sync_functions[key] = super().ensure_sync(func) is func
        return func if known else super().ensure_sync(func)

    @property
    def _sync_functions(self) -> dict[Any, bool]:
        cache = self.__dict__.get("_policyd_sync")
        if cache is None:
            cache = self.__dict__["_policyd_sync"] = {}
        return cache


class RequestPipeline:
    """`app.wsgi_app` for every request, before routing: takes the caller's X-Request-ID (or
    makes one) for the log lines and audit records written meanwhile, returns it on every
    answer (a 401 or 404 too), runs the app-wide `steps` (the body limit first), and times
    the request into the latency histogram by endpoint; answers of POST /v1/decisions also
    count by outcome (`note_outcome`).

    `routes` maps (method, path) to (endpoint, WSGI handler): the routes answered here without
    Flask (POST /v1/decisions, api/decisions.py). Every other request goes to Flask.
    """

    def __init__(
        self,
        wsgi_app: WSGIApp,
        metrics: dict[str, Any],
        steps: Iterable[Step] = (),
        routes: Mapping[tuple[str, str], tuple[str, WSGIApp]] | None = None,
    ):
        self.wsgi_app = wsgi_app
        self._metrics = metrics
        self.steps = list(steps)  # app-wide concerns: each may answer instead of the route
        self.routes = dict(routes or {})
        # Label children, bound on first use (a child made early would export a zero series,
        # and under PROMETHEUS_MULTIPROC_DIR read its start value too early); binding one
        # costs a lock and a dict per call.
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        started = time.perf_counter()
        rid = logs.accepted_request_id(environ.get("HTTP_X_REQUEST_ID")) or logs.new_request_id()
        token = logs.request_id.set(rid)
        route = self.routes.get((environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")))
        endpoint: list[str | None] = [route[0] if route else None]

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info=None):
            if endpoint[0] is None:
                # Flask answers while its request is still in the environ (it clears it
                # after): its endpoint, None when no route matched.
                endpoint[0] = getattr(environ.get("werkzeug.request"), "endpoint", None)
            headers.append((HEADER, rid))
            return start_response(status, headers, exc_info)

        try:
            for step in self.steps:
                answer = step(environ)
                if answer is not None:
                    return answer(environ, start_with_id)
            handler = route[1] if route else self.wsgi_app
            answer = handler(environ, start_with_id)
            work = environ.get(_AFTER)
            return answer if not work else AfterResponse(answer, work, rid)
        finally:
            logs.request_id.reset(token)
            if endpoint[0] is not None:
                self._observe(environ, endpoint[0], time.perf_counter() - started)

    def _observe(self, environ: dict[str, Any], endpoint: str, seconds: float) -> None:
        method = environ.get("REQUEST_METHOD", "")
        self._child("latency", endpoint, method).observe(seconds)
        if (endpoint, method) == DECISIONS:
            self._child("decisions", environ.get(_OUTCOME) or "error").inc()

    def _child(self, metric: str, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._metrics[metric].labels(*labels)
        return child


def after_response(environ: dict[str, Any], work: Callable[[], None]) -> None:
    """Run `work` once this request's answer is sent: the server closes the answer's
    iterable after writing it (WSGI), and `AfterResponse.close` runs the work then. For work a
    request found due that its caller need not wait for (a cached subject's refresh)."""
    environ.setdefault(_AFTER, []).append(work)


class AfterResponse:
    """An answer's iterable whose `close` then runs the request's deferred work, each piece
    under the request's id; a failure is logged, never raised to the server."""

    def __init__(self, answer: Iterable[bytes], work: list[Callable[[], None]], rid: str):
        self._answer = answer
        self._work = work
        self._rid = rid

    def __iter__(self):
        return iter(self._answer)

    def close(self) -> None:
        try:
            close = getattr(self._answer, "close", None)
            if close is not None:
                close()
        finally:
            token = logs.request_id.set(self._rid)
            try:
                for work in self._work:
                    try:
                        work()
                    except Exception:
                        _log.exception("work deferred after a response failed")
            finally:
                logs.request_id.reset(token)


def body_limit(app: Flask) -> Step:
    """The step answering 413 (naming `body`) for a body declared larger than
    POLICYD_MAX_BODY_BYTES, on every route; a chunked body is held to it as it is read."""
    limit = app.config.get("MAX_CONTENT_LENGTH")

    def refuse_large_body(environ: dict[str, Any]) -> Response | None:
        length = environ.get("CONTENT_LENGTH")
        if limit is None or not length or not length.isdigit() or int(length) <= limit:
            return None
        return json_response(app, too_large_body(limit))

    return refuse_large_body


def note_outcome(environ: dict[str, Any], outcome: str) -> None:
    """Name the outcome of the decision this request answered, for the metrics."""
    environ[_OUTCOME] = outcome
