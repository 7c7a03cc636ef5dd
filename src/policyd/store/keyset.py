"""Keyset pages: an opaque cursor holding the ordering values of the last row shown."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from policyd.store.query import Rows, page

__all__ = ["MAX_CURSOR", "CursorError", "Rows", "keyset_page"]

MAX_CURSOR = 512  # characters of an `after` value; every cursor policyd gives is far shorter


class CursorError(ValueError):
    """An `after` value that is not a cursor of this list."""


def keyset_page(
    session: Session, query: Select, *, after: str | None, offset: int, limit: int
) -> tuple[Rows, int | None]:
    """One page of `query` and its total, or, with a cursor, the page after the cursor's row
    and no total.

    OFFSET walks every skipped row, so it grows with the page number; the total is counted
    as `count_page` does (at most so many rows, then "more than", in `Rows.more_than`). A
    cursor page reads `limit` rows from the index that serves the query's ORDER BY.
    `after=""` starts a cursor walk at the first row. The query's ORDER BY must end with a
    unique column (the id), and name only columns of the rows it selects.

    Raises:
        CursorError: `after` is not a cursor of this list.
    """
    keys = _order(query)
    if after is None:
        rows, total = page(session, query, offset, limit)
        if offset + len(rows) < total and rows:
            rows.next_after = _encode(keys, rows[-1])
        return rows, total
    if after:
        query = query.where(_beyond(keys, _decode(keys, after)))
    rows = Rows(session.scalars(query.limit(limit + 1)))
    if len(rows) > limit:
        del rows[limit:]
        rows.next_after = _encode(keys, rows[-1])
    return rows, None


def _order(query: Select) -> list[tuple[Any, bool]]:
    """(column, descending) for each ORDER BY term of `query`."""
    keys = []
    for term in query._order_by_clauses:  # SQLAlchemy has no public reader of a Select's order
        descending = isinstance(term, UnaryExpression) and term.modifier is operators.desc_op
        column = term.element if isinstance(term, UnaryExpression) else term
        keys.append((column, descending))
    if not keys:
        raise ValueError("a keyset page needs an ORDER BY")
    return keys


def _beyond(keys: list[tuple[Any, bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows after `values` in the order of `keys`.

    The lexicographic OR is exact; the leading non-strict bound on the first column is what
    lets the planner start its index scan at the cursor instead of filtering from the top
    (a row comparison `(a, b) < (x, y)` would do that too, but only when every key runs the
    same way, and the lists order newest first by a time and then by id ascending).
    """
    terms = []
    for i, (column, descending) in enumerate(keys):
        equal = [keys[j][0] == values[j] for j in range(i)]
        past = column < values[i] if descending else column > values[i]
        terms.append(and_(*equal, past))
    first, descending = keys[0]
    bound = first <= values[0] if descending else first >= values[0]
    return and_(bound, or_(*terms))


def _encode(keys: list[tuple[Any, bool]], row: Any) -> str:
    values = [getattr(row, column.key) for column, _ in keys]
    text = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(keys: list[tuple[Any, bool]], after: str) -> list[Any]:
    if len(after) > MAX_CURSOR:
        raise CursorError("after is not a cursor this list gave")
    try:
        raw = base64.urlsafe_b64decode(after + "=" * (-len(after) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        raise CursorError("after is not a cursor this list gave") from None
    if not isinstance(values, list) or len(values) != len(keys):
        raise CursorError("after is not a cursor this list gave")
    return [_value(column, value) for (column, _), value in zip(keys, values, strict=True)]


def _value(column: Any, value: Any) -> Any:
    kind = getattr(column.type, "impl", column.type).python_type  # a TypeDecorator's own
    if kind is datetime and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise CursorError("after is not a cursor this list gave") from None
        if moment.tzinfo is None:
            raise CursorError("after is not a cursor this list gave")
        return moment.astimezone(UTC)
    if kind is int and type(value) is int and abs(value) < 1 << 63:
        return value
    if kind is str and isinstance(value, str) and "\x00" not in value:
        return value
    raise CursorError("after is not a cursor this list gave")
