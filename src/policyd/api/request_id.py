"""X-Request-ID: taken from the caller (or made), returned, and carried into log lines."""

from __future__ import annotations

from flask import Flask, g, request
from flask.typing import ResponseReturnValue

from policyd import logs

HEADER = "X-Request-ID"


def init_app(app: Flask) -> None:
    """Register first, so that every answer — a 401 included — carries the id."""

    @app.before_request
    def take_request_id() -> None:
        rid = logs.accepted_request_id(request.headers.get(HEADER)) or logs.new_request_id()
        g.request_id = rid
        g.request_id_token = logs.request_id.set(rid)

    @app.after_request
    def return_request_id(response: ResponseReturnValue):
        rid = g.get("request_id")
        if rid:
            response.headers[HEADER] = rid
        return response

    @app.teardown_request
    def forget_request_id(_exc: BaseException | None = None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            logs.request_id.reset(token)


def current() -> str | None:
    """The id of the request being handled, or None outside one."""
    return logs.request_id.get()
