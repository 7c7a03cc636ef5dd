"""Schemas of policy versions and their publication."""

from __future__ import annotations

from marshmallow import Schema, fields

from policyd.api.schemas.base import Strict
from policyd.rules.inputs import (
    MAX_NAME,
    MAX_TEXT,
    Text,
    at_most,
)

MAX_FILES = 1000  # files in one published bundle
MAX_PATH = 255  # a file's relative path


def rule_files(description: str, **options) -> fields.Dict:
    """A bundle's rule files in a request body: relative path -> text, at most MAX_FILES."""
    return fields.Dict(
        keys=Text(MAX_PATH, min_size=1),
        values=Text(size=None),
        validate=at_most(MAX_FILES, "files"),
        metadata={"description": description, "maxProperties": MAX_FILES},
        **options,
    )


class PublishInSchema(Strict):
    files = rule_files("relative path -> rule-file text", required=True)
    message = Text(MAX_TEXT, load_default="")
    git_commit = Text(MAX_NAME, load_default=None, allow_none=True)


class VersionOutSchema(Schema):
    id = fields.String()
    content_hash = fields.String()
    git_commit = fields.String(allow_none=True)
    git_dirty = fields.Boolean(
        allow_none=True,
        metadata={"description": "uncommitted changes at publication; null: not known"},
    )
    author = fields.String()
    message = fields.String()
    created_at = fields.DateTime()
    packages = fields.List(fields.String())
    active = fields.Boolean()


class VersionDetailSchema(VersionOutSchema):
    files = fields.Dict(keys=fields.String(), values=fields.String())
