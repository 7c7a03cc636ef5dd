"""The Blueprint every API module uses: one bounded body parser, one documented page header."""

from __future__ import annotations

import flask_smorest

from policyd.api.parser import PolicydParser

PAGINATION_HEADER = {
    "description": "The page as a JSON object: total, total_pages, first_page, last_page, and "
    "page, previous_page, next_page where they exist.",
    "required": True,
    "schema": {"type": "string", "pattern": "^\\{.*\\}$"},
    "example": '{"total": 3, "total_pages": 1, "first_page": 1, "last_page": 1, "page": 1}',
}


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = PolicydParser()

    def _document_pagination_metadata(self, spec, resp_doc):
        # The header is JSON text; flask-smorest documents it as an object, which no header
        # value is, so clients and schema checkers disagreed with what we send.
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = PAGINATION_HEADER
