"""One JSON error shape for every 4xx/5xx, naming the offending fields."""

from __future__ import annotations

from http import HTTPStatus

from flask import Flask, Response, jsonify
from marshmallow import Schema, fields
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from policyd.domain import IllegalTransitionError
from policyd.services.errors import ServiceError


class ApiErrorSchema(Schema):
    """Every error response: status, a message and the offending fields."""

    code = fields.Integer(metadata={"description": "HTTP status code"})
    status = fields.String(metadata={"description": "HTTP status name"})
    message = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={
            "description": "field -> messages. Nested fields read `subject.attributes.x`, "
            "query-string ones `query.name`, the body as a whole `body`; rule-file errors "
            "under `files` read file:line"
        },
    )


def error_body(code: int, message: str, errors: dict | None = None) -> dict:
    body = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = errors
    return body


def flatten(errors: dict[str, list[str]], name: str, messages, prefix: str = "") -> None:
    """marshmallow's nested messages as {"a.b.c": [message, ...]} into `errors`."""
    if isinstance(messages, dict):
        for key, inner in messages.items():
            # A dict's key and value errors come as {key: {"key"/"value": [...]}}: name the
            # key only.
            key = str(key)
            inner_name = name if key in ("key", "value") else f"{prefix}{key}"
            flatten(errors, inner_name, inner, f"{prefix}{key}.")
        return
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        errors.setdefault(name, []).extend(messages)
        return
    if isinstance(messages, list):  # a list's item errors are keyed by index
        for index, inner in enumerate(messages):
            flatten(errors, f"{name}.{index}", inner, f"{name}.{index}.")
        return
    errors.setdefault(name, []).append(str(messages))


def input_error_body(code: int, messages: dict, message: str = "") -> dict:
    """The body of an input error: `messages` by location as webargs nests them (json, query,
    ...), flattened to dotted field names; without `message`, one naming the fields."""
    errors: dict[str, list[str]] = {}
    # A location's own list (an unreadable body) is `body`.
    for location, fields_ in messages.items():
        prefix = "" if location == "json" else f"{location}."
        flatten(errors, prefix.rstrip(".") or "body", fields_, prefix)
    if errors and not message:
        message = "invalid input: " + ", ".join(sorted(errors))
    return error_body(code, message, errors)


def too_large_body(limit: int | None) -> dict:
    """The 413 of a body over POLICYD_MAX_BODY_BYTES, naming `body`."""
    message = f"the request body is larger than {limit} bytes (POLICYD_MAX_BODY_BYTES)"
    return error_body(413, message, {"body": [message]})


def service_error_body(err: ServiceError) -> dict:
    errors = {}
    if err.field:
        errors[err.field] = err.errors or [err.message]
    return error_body(err.status, err.message, errors)


# The database refused a value (too long for its column, out of range): the client's input.
DATA_ERROR = error_body(422, "a value is too long or malformed for the database")
INTERNAL_ERROR = error_body(500, "internal error; see the server log")


def json_response(app: Flask, body: dict, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """`body` (an error body) as the JSON answer Flask's jsonify gives, with its status."""
    response = app.json.response(body)
    response.status_code = body["code"]
    for name, value in headers:
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(err: ServiceError):
        return jsonify(service_error_body(err)), err.status

    @app.errorhandler(IllegalTransitionError)
    def illegal_transition(err: IllegalTransitionError):
        # The object's state does not allow the change (the transition table in domain.py).
        message = str(err)
        return jsonify(error_body(409, message, {"state": [message]})), 409

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        data = getattr(err, "data", None) or {}
        code = err.code or 500
        # webargs nests validation errors by location (json, query, headers) and by field.
        messages = data.get("messages") or {}
        body = input_error_body(code, messages, data.get("message") or "")
        if not body["message"]:
            body["message"] = err.description or ""
        if code == 413:
            body = too_large_body(app.config.get("MAX_CONTENT_LENGTH"))
        response = jsonify(body)
        # What the exception says beside its body: Allow (405), WWW-Authenticate (401), ...
        for name, value in err.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, code

    @app.errorhandler(DataError)
    def data_error(err: DataError):
        return jsonify(DATA_ERROR), 422

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        app.logger.exception("unhandled error")
        return jsonify(INTERNAL_ERROR), 500
