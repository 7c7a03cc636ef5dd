"""Query helpers shared by the services."""

from __future__ import annotations

import json
import operator
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    CTE,
    JSON,
    ColumnElement,
    Connection,
    Select,
    String,
    Table,
    any_,
    bindparam,
    cast,
    column,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value


def among(
    session: Session, column: ColumnElement[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """`column IN values`, for lists of hundreds of ids: on PostgreSQL one array parameter
    (`= ANY(...)`), which psycopg need not parse out of a long statement; elsewhere IN."""
    values = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def table_of(
    session: Session,
    name: str,
    columns: Sequence[str],
    groups: Sequence[tuple[Sequence[str], Sequence[str]]],
) -> CTE:
    """A table named `name` of string `columns` to join in a query, given as groups: the
    values of every column but the last, and the last column's values under them (a
    resource and its members). However many, it is one JSON parameter that PostgreSQL
    (`json_to_recordset`) and SQLite (`json_each`) take apart.

    For comparing thousands of values a service holds (a connector's answer) with rows in
    one query, without a statement that grows with them or a temporary table. JSON, not one
    array per column: psycopg adapts a list element by element in Python, json.dumps in C;
    grouped, so the leading values are sent once a group, not once a row.
    """
    *leading, last = columns
    document = json.dumps(
        [{**dict(zip(leading, lead, strict=True)), last: list(values)} for lead, values in groups]
    )
    parameter = bindparam(None, document)
    if session.get_bind().dialect.name == "postgresql":
        # Parsed once, into typed columns; each group's values once more.
        group = func.json_to_recordset(cast(parameter, JSON)).table_valued(
            *(column(name_, String) for name_ in leading), column(last, JSON)
        )
        group = group.render_derived(name=f"{name}_group", with_types=True)
        lead = [group.c[name_] for name_ in leading]
        value = func.json_array_elements_text(group.c[last])
    else:
        group = func.json_each(parameter).table_valued("value", name=f"{name}_group")
        lead = [func.json_extract(group.c.value, f"$.{name_}") for name_ in leading]
        value = func.json_each(group.c.value, f"$.{last}")
    value = value.table_valued("value", name=f"{name}_value")
    made = zip([*lead, value.c.value], columns, strict=True)
    labelled = [column_.label(label) for column_, label in made]
    return select(*labelled).select_from(group.join(value, true())).cte(name)


def unindexed(column: ColumnElement[str]) -> ColumnElement[str]:
    """`column`'s text in a form no index offers (`column || ''`).

    For a filter beside a list of ids (`among`): the planner's statistics lag behind a
    mass expiry, so they say hardly any assignment is `expiring` or job `running` while
    tens of thousands are; planned by those numbers, a filter on such a state reads every
    row in it through the state's index and tests each against the whole id list, for
    every batch. Kept from the indexes, it is checked on the rows the ids find.
    """
    return column.op("||")(literal_column("''"))


# Rows a numbered page counts at most beyond its own last row: a count of millions reads
# millions of index entries, so past this the total says "more than" instead.
COUNT_LIMIT = 10_000


class Rows(list):
    """One page of rows.

    `next_after` is the cursor of the page after it (None: the last or no cursor list);
    `more_than` is set when the count stopped early: more than that many rows match.
    """

    next_after: str | None = None
    more_than: int | None = None

    def carried(self, items: Iterable[Any]) -> Rows:
        """`items` (this page's rows made into something else) with this page's facts."""
        made = Rows(items)
        made.next_after, made.more_than = self.next_after, self.more_than
        return made


def count_page(session: Session, query: Select, offset: int, limit: int) -> tuple[int, int | None]:
    """How many rows `query` matches, counting at most COUNT_LIMIT or the rows up to the end
    of the page at `offset`, whichever is more, plus one; and that bound when the count
    reached it (more rows match than it says), else None.

    The count still tells whether a page after this one exists, and reads no more rows
    than the page's own OFFSET walks past when that is deeper than the limit.
    """
    bound = max(COUNT_LIMIT, offset + limit)
    if query._distinct or query._group_by_clauses:  # the columns are what is counted
        matches = query.order_by(None)
    else:  # one constant a row: an index alone may answer, without reading the rows
        matches = query.with_only_columns(literal_column("1"), maintain_column_froms=True)
        matches = matches.order_by(None)
    counted = session.scalar(select(func.count()).select_from(matches.limit(bound + 1).subquery()))
    counted = counted or 0
    return counted, (bound if counted > bound else None)


def page(session: Session, query: Select, offset: int, limit: int) -> tuple[Rows, int]:
    """One page of `query` and how many rows it matches, counted as `count_page` does."""
    total, more_than = count_page(session, query, offset, limit)
    rows = Rows()
    if offset < total:  # also keeps absurd page numbers away from the database
        rows.extend(session.scalars(query.offset(offset).limit(limit)))
    rows.more_than = more_than
    return rows, total


def insert_many(session: Session, model: type, rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys) in the session's transaction, fast.

    For the thousands of rows of a mass expiry: PostgreSQL gets them through COPY (psycopg
    would otherwise send one INSERT per row, or parse one huge multi-row INSERT per batch);
    SQLite through one prepared statement that its driver runs row after row in C. Only
    column defaults of the database apply (give ids made in Python explicitly).
    """
    if not rows:
        return
    keys = rows[0].keys()
    if any(row.keys() != keys for row in rows):
        # COPY takes its columns from the first row: a key missing from another row would
        # be stored as NULL instead of the column's default.
        raise ValueError(f"rows for {model.__name__} do not all have the same keys")
    session.flush()  # rows added before these stay before them
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(insert(model), rows)
        return
    table = model.__table__
    names = list(keys)
    columns = [table.c[name] for name in names]
    convert = [
        _to_json
        if isinstance(column.type, JSON)
        else column.type.bind_processor(connection.dialect)
        for column in columns
    ]
    quote = connection.dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(name) for name in names)}) FROM STDIN"
    # Only the columns with a conversion are touched per row (most are text or numbers,
    # which COPY takes as they are): a mass expiry writes tens of thousands of rows.
    steps = [(index, step) for index, step in enumerate(convert) if step is not None]
    values = operator.itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    cursor = connection.connection.driver_connection.cursor()
    with cursor, cursor.copy(statement) as copy:
        for row in rows:
            line = list(values(row))
            for index, step in steps:
                if line[index] is not None:
                    line[index] = step(line[index])
            copy.write_row(line)


def copy_rows(
    connection: Connection,
    table: Table,
    names: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    pause: float = 0.0,
    every: int = 32,
) -> int:
    """COPY `rows` (values in the order of `names`, already as PostgreSQL takes them in
    text form: str, numbers, None) into `table` in the connection's transaction; with
    `pause`, resting that many seconds between slices of `every` rows, so that neither this
    process nor the server storing what it was sent holds a core for long.

    No conversion and no ON CONFLICT: for callers that know their rows are new, such as the
    decision-log drainer (an INSERT per row costs the server and psycopg several times more).

    Returns:
        The number of rows sent.
    """
    quote = connection.dialect.identifier_preparer.quote
    statement = f"COPY {quote(table.name)} ({', '.join(quote(name) for name in names)}) FROM STDIN"
    sent = 0
    cursor = connection.connection.driver_connection.cursor()
    with cursor, cursor.copy(statement) as copy:
        for row in rows:
            if pause and sent and sent % every == 0:
                time.sleep(pause)
            copy.write_row(row)
            sent += 1
    return sent


def update_many(session: Session, objects: Sequence[Any], **values: Any) -> None:
    """Set `values` on the rows of many loaded objects with one UPDATE (the flush would
    send one per row) and on the objects themselves, as saved values, not pending changes."""
    if not objects:
        return
    table = type(objects[0]).__table__
    with session.no_autoflush:
        session.execute(
            update(table)
            .where(among(session, table.c.id, [obj.id for obj in objects]))
            .values(values)
        )
    for obj in objects:
        for key, value in values.items():
            set_committed_value(obj, key, value)


def _to_json(value: Any) -> str:
    return json.dumps(value)
