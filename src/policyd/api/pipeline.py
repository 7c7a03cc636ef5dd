"""The one request pipeline: a WSGI middleware around Flask for every route (id, timing)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request

from policyd import logs

HEADER = "X-Request-ID"
DECISIONS = ("decisions.Decisions", "POST")  # the endpoint whose answers count by outcome
_OUTCOME = "policyd.decision_outcome"  # environ key the decisions view writes its outcome to

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


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
    answer (a 401 or 404 too), and times the request into the latency histogram by endpoint;
    answers of POST /v1/decisions also count by outcome (the view names it: `note_outcome`).
    """

    def __init__(self, wsgi_app: WSGIApp, metrics: dict[str, Any]):
        self.wsgi_app = wsgi_app
        self._metrics = metrics
        # Label children, bound on first use (a child made early would export a zero series,
        # and under PROMETHEUS_MULTIPROC_DIR read its start value too early); binding one
        # costs a lock and a dict per call.
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        started = time.perf_counter()
        rid = logs.accepted_request_id(environ.get("HTTP_X_REQUEST_ID")) or logs.new_request_id()
        token = logs.request_id.set(rid)
        endpoint: list[str | None] = [None]

        def start_with_id(status: str, headers: list[tuple[str, str]], exc_info=None):
            # Flask answers while its request is still in the environ (it clears it after):
            # its endpoint, None when no route matched.
            endpoint[0] = getattr(environ.get("werkzeug.request"), "endpoint", None)
            headers.append((HEADER, rid))
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, start_with_id)
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


def note_outcome(outcome: str) -> None:
    """Name the outcome of the decision this request answered, for the metrics."""
    request.environ[_OUTCOME] = outcome
