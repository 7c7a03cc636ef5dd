"""The Api and the Blueprint every API module uses: one bounded body parser, one error
schema, and an OpenAPI document that says what the server checks."""

from __future__ import annotations

import json
from typing import Any

import flask_smorest
from marshmallow import fields

from policyd.api.errors import ApiErrorSchema
from policyd.api.parser import PolicydParser
from policyd.services.listing import COUNT_LIMIT

PAGINATION_HEADER = {
    "description": "The page as a JSON object: total, total_pages, first_page, last_page, and "
    "page, previous_page, next_page where they exist; next_after, the cursor of the next page, "
    "on the lists that take `after` (a cursor page holds only next_after). When more rows "
    f"match than a page counts ({COUNT_LIMIT:,}, or the rows to the end of the page if more), "
    "total_more_than replaces total, total_pages and last_page.",
    "required": True,
    "schema": {"type": "string", "pattern": "^\\{.*\\}$"},
    "example": '{"total": 3, "total_pages": 1, "first_page": 1, "last_page": 1, "page": 1}',
}


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = PolicydParser()

    def _set_pagination_metadata(self, page_params, result, headers):
        result, headers = super()._set_pagination_metadata(page_params, result, headers)
        next_after = getattr(page_params, "next_after", None)
        if getattr(page_params, "cursor", False):
            metadata = {} if next_after is None else {"next_after": next_after}
        else:
            metadata = json.loads(headers[self.PAGINATION_HEADER_NAME])
            more_than = getattr(page_params, "more_than", None)
            if more_than is not None:
                # The count stopped early: no total and no last page, which it does not know.
                for key in ("total", "total_pages", "last_page"):
                    metadata.pop(key, None)
                metadata = {"total_more_than": more_than, **metadata}
            if next_after is not None:
                metadata["next_after"] = next_after
        headers[self.PAGINATION_HEADER_NAME] = json.dumps(metadata)
        return result, headers

    def _document_pagination_metadata(self, spec, resp_doc):
        # The header is JSON text; flask-smorest documents it as an object, which no header
        # value is, so clients and schema checkers disagreed with what we send.
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = PAGINATION_HEADER


class PolicydApi(flask_smorest.Api):
    ERROR_SCHEMA = ApiErrorSchema  # one error shape for every documented error

    def _init_spec(self, *args: Any, **kwargs: Any) -> None:
        super()._init_spec(*args, **kwargs)
        self.ma_plugin.converter.add_attribute_function(dict_keys2properties)
        self.ma_plugin.converter.add_attribute_function(nullable_nested2properties)


def dict_keys2properties(self, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    """`propertyNames` for a Dict whose keys are checked (length, no NUL), so the document
    states the rule the server applies (apispec documents only a Dict's values)."""
    key_field = getattr(field, "key_field", None)
    if not isinstance(field, fields.Dict) or key_field is None:
        return {}
    names = self.field2property(key_field)
    kept = {k: v for k, v in names.items() if k in ("type", "minLength", "maxLength", "pattern")}
    return {"propertyNames": kept} if len(kept) > 1 else {}


def nullable_nested2properties(self, field: fields.Field, **kwargs: Any) -> dict[str, Any]:
    """A nullable Nested field is its schema or null: apispec's second branch, a nullable
    object of any shape, would admit objects the server refuses (OpenAPI 3.0.3 spells
    "only null" as nullable with enum [null])."""
    ret = kwargs.get("ret", {})
    branches = ret.get("anyOf")
    if not isinstance(field, fields.Nested) or not field.allow_none or not branches:
        return {}
    return {
        "anyOf": [b for b in branches if "$ref" in b]
        + [{"type": "object", "nullable": True, "enum": [None]}]
    }
