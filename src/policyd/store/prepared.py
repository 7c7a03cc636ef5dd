"""A SELECT compiled once per dialect and run on the driver's cursor: the decision path's reads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple

from sqlalchemy import CompoundSelect, Connection, Engine, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

Processor = Callable[[Any], Any] | None


class _Compiled(NamedTuple):
    sql: str
    names: tuple[str, ...] | None  # positional parameters' order; None: by name (pyformat)
    fixed: dict[str, Any]  # parameters whose value the statement holds, bound already
    binders: dict[str, Processor]  # the caller's parameters: to the driver's value
    readers: tuple[Processor, ...]  # each column of a row: from the driver's value


class PreparedRead:
    """`statement`, run with the driver's cursor on a SQLAlchemy connection (in its
    transaction), its parameters bound and its columns read by the same type processing as
    `connection.execute` would apply.

    SQLAlchemy's work around one execution (execution context, result object, caches'
    look-ups) costs about 40 µs, several times what an indexed look-up costs SQLite. The
    decision path reads the database only when a cache lapses (a subject, a token, the active
    version), in the middle of a request, every few seconds in every worker: those reads are
    the latency tail of POST /v1/decisions. Only for small, fixed SELECTs: no expanding IN
    (bind a constant list as separate parameters), no ORM entities.
    """

    def __init__(self, statement: Select[Any] | CompoundSelect):
        self.statement = statement
        self._by_dialect: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows, each a tuple of the statement's columns."""
        compiled = self._compiled(connection.dialect)
        values = dict(compiled.fixed)
        for name, binder in compiled.binders.items():
            value = params[name]
            values[name] = binder(value) if binder is not None and value is not None else value
        arguments: Sequence[Any] | Mapping[str, Any] = (
            values if compiled.names is None else tuple(values[name] for name in compiled.names)
        )
        raw = _fetch(connection, compiled.sql, arguments)
        readers = compiled.readers
        if not any(readers):
            return [tuple(row) for row in raw]
        return [
            tuple(
                value if read is None else read(value)
                for read, value in zip(readers, row, strict=True)
            )
            for row in raw
        ]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        rows = self.rows(connection, params)
        return rows[0] if rows else None

    def _compiled(self, dialect: Dialect) -> _Compiled:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            with self._lock:
                compiled = self._by_dialect.get(dialect.name) or _compile(self.statement, dialect)
                self._by_dialect[dialect.name] = compiled
        return compiled


def _fetch(connection: Connection, sql: str, arguments: Any) -> list[Any]:
    """Run `sql` on the connection's driver cursor; the driver's errors raised as
    SQLAlchemy's (DataError, OperationalError, ...), as `connection.execute` raises them, and
    a connection found lost is invalidated."""
    dialect = connection.dialect
    driver_error = dialect.loaded_dbapi.Error
    dbapi_connection = connection.connection
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql, arguments)
        return cursor.fetchall()
    except driver_error as err:
        lost = dialect.is_disconnect(err, dbapi_connection, cursor)
        if lost:
            connection.invalidate(err)
        raise DBAPIError.instance(
            sql, arguments, err, driver_error, connection_invalidated=lost, dialect=dialect
        ) from err
    finally:
        with suppress(driver_error):  # of a connection just invalidated
            cursor.close()


def _compile(statement: Select[Any] | CompoundSelect, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:
        raise ValueError("PreparedRead takes no expanding or literal-execute parameters")
    fixed: dict[str, Any] = {}
    binders: dict[str, Processor] = {}
    for bind in compiled.binds.values():
        name = compiled.bind_names[bind]
        binder = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required or (bind.value is None and bind.callable is None):
            binders[name] = binder
        else:
            value = bind.effective_value
            fixed[name] = binder(value) if binder is not None and value is not None else value
    readers = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.selected_columns
    )
    names = tuple(compiled.positiontup) if compiled.positiontup is not None else None
    return _Compiled(str(compiled), names, fixed, binders, readers)


@contextmanager
def read_connection(bind: Session | Engine | Connection) -> Iterator[Connection]:
    """A pooled connection for a `PreparedRead` outside a session's transaction: beginning the
    session's costs about 30 µs, more than the read (a read that must see the session's own
    writes takes `session.connection()` instead). Of `bind`'s engine; a session bound to a
    connection (a test's, inside its transaction), or a connection, reads on that connection.
    """
    if isinstance(bind, Session):
        bind = bind.get_bind()
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.connect() as connection:
        yield connection
