"""The `apiVersion` that every policyd file (rules, templates, tests, connectors) starts with."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields

from policyd.rules.model import API_VERSION


def api_version_problem(version: Any) -> str | None:
    """Why `version` is not the file format this policyd reads; None when it is."""
    if version == API_VERSION:
        return None
    if version is None:
        return f"missing: a policyd file starts with apiVersion: {API_VERSION}"
    return f"unknown format version {version!r}; this policyd reads {API_VERSION}"


def _check(version: Any) -> None:
    problem = api_version_problem(version)
    if problem is not None:
        raise ValidationError(problem)


def ApiVersion() -> fields.String:
    """The required `apiVersion` key of a file schema."""
    return fields.String(data_key="apiVersion", required=True, validate=_check)
