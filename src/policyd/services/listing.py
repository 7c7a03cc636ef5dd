"""Paged lists: numbered pages with a bounded count, or keyset cursors; a bad cursor is a 422."""

from __future__ import annotations

from sqlalchemy import Select
from sqlalchemy.orm import Session

from policyd.services.errors import InvalidError
from policyd.store.keyset import MAX_CURSOR, CursorError, Rows, keyset_page
from policyd.store.query import COUNT_LIMIT

__all__ = ["COUNT_LIMIT", "MAX_CURSOR", "Rows", "list_page"]


def list_page(
    session: Session, query: Select, *, after: str | None, offset: int, limit: int
) -> tuple[Rows, int | None]:
    """`keyset_page` for a list endpoint: a cursor that is not one is a 422 naming `after`."""
    try:
        return keyset_page(session, query, after=after, offset=offset, limit=limit)
    except CursorError as err:
        raise InvalidError(str(err), field="after") from None
