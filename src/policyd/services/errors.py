"""Errors services raise; the API maps each to one HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, field: str | None = None, errors: list[str] | None = None):
        self.message = message
        self.field = field
        self.errors = errors or []
        super().__init__(message)


class NotFoundError(ServiceError):
    status = 404


class ForbiddenError(ServiceError):
    status = 403


class ConflictError(ServiceError):
    status = 409


class InvalidError(ServiceError):
    """A client input is wrong; `field` names it."""

    status = 422
