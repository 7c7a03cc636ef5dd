"""One JSON error shape for every 4xx/5xx, naming the offending fields."""

from __future__ import annotations

from http import HTTPStatus

from flask import Flask, jsonify
from marshmallow import Schema, fields
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from policyd.services.errors import ServiceError


class ApiErrorSchema(Schema):
    """Every error response: status, a message and the offending fields."""

    code = fields.Integer(metadata={"description": "HTTP status code"})
    status = fields.String(metadata={"description": "HTTP status name"})
    message = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "field (or `files`) -> messages; file errors read file:line"},
    )


def error_body(code: int, message: str, errors: dict | None = None) -> dict:
    body = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = errors
    return body


def init_app(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(err: ServiceError):
        errors = {}
        if err.field:
            errors[err.field] = err.errors or [err.message]
        return jsonify(error_body(err.status, err.message, errors)), err.status

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        data = getattr(err, "data", None) or {}
        errors = {}
        # webargs nests validation errors by location (json, query, headers): flatten them.
        for location, fields_ in (data.get("messages") or {}).items():
            for name, messages in (fields_ or {}).items():
                errors[name if location == "json" else f"{location}.{name}"] = messages
        message = data.get("message") or err.description or ""
        if errors and not data.get("message"):
            message = "invalid input: " + ", ".join(sorted(errors))
        return jsonify(error_body(err.code or 500, message, errors)), err.code or 500

    @app.errorhandler(DataError)
    def data_error(err: DataError):
        # The database refused a value (too long for its column, out of range): the
        # client's input, not our fault.
        message = "a value is too long or malformed for the database"
        return jsonify(error_body(422, message)), 422

    @app.errorhandler(Exception)
    def unexpected(err: Exception):
        app.logger.exception("unhandled error")
        return jsonify(error_body(500, "internal error; see the server log")), 500
