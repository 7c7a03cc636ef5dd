"""Stores spooled decision-log entries exactly once: entries and offset in one transaction."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Table, delete, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from policyd.services.decision_log.codec import COLUMNS, JSON_COLUMNS, TABLE, Refused, row_values
from policyd.services.decision_log.codec import copy_values as _copy_values
from policyd.store.models import SpoolProgress
from policyd.store.query import copy_rows
from policyd.store.spool import Pending

log = logging.getLogger(__name__)

PROGRESS: Table = SpoolProgress.__table__
REJECTED = "rejected.txt"  # spool lines the database refused after all: kept, never dropped
_CHUNK = 32  # entries per INSERT statement (SQLite, and the retry that skips stored ids)

_UPSERT = (
    "INSERT INTO spool_progress (spool, stored) VALUES (:spool, :end) "
    "ON CONFLICT (spool) DO UPDATE SET stored = excluded.stored"
)
_UPSERT_OFFSET = text(f"{_UPSERT} WHERE spool_progress.stored = :start RETURNING stored")
_UPSERT_OFFSET_ANYWAY = text(_UPSERT)


class Storer:
    """Inserts batches of spool records into `decisions`; the one place that does.

    Each transaction first moves the file's offset in `spool_progress` from where the batch
    starts to where it ends (`... DO UPDATE ... WHERE stored = <start>`), then inserts the
    entries (COPY on PostgreSQL, no ON CONFLICT). If the offset stands elsewhere, another
    transaction stored the batch already (another drainer, a commit whose answer was lost)
    and nothing is inserted. Lines the database refuses are kept in `<folder>/rejected.txt`.
    """

    def __init__(self, engine: Engine, folder: Path):
        self.engine = engine
        self.folder = folder

    def store(self, batch: Pending, pause: float = 0.0) -> tuple[int, int]:
        """Store `batch` and move its file's offset to `batch.end`, in one transaction,
        resting `pause` seconds between slices of `_CHUNK` entries.

        Returns:
            The file's stored offset (`batch.end`, or where another transaction had got to
            when that is further), and the number of entries handled (stored or rejected).

        Raises:
            OperationalError: the database is unreachable or busy; nothing was stored.
        """
        bad: list[Refused] = []
        try:
            with self.engine.begin() as connection:
                stored = _move_offset(connection, batch)
                if stored is None:
                    bad = _insert(connection, batch.records, pause)
        except OperationalError:
            raise  # everything stays spooled for a retry
        except Exception:
            stored = batch.start  # a refused row, or an id stored already: see below
        if stored is None:
            self._reject(bad)
            return batch.end, len(batch.records)
        if stored > batch.start:
            return stored, 0  # nothing of this batch is new (that transaction stored it)
        return self._store_again(batch), len(batch.records)

    def _store_again(self, batch: Pending) -> int:
        """Insert `batch` skipping ids that are stored (the offset of a file removed and
        forgotten by one drainer while another stored it), or find the row the database
        refuses; then set the offset."""
        bad: list[Refused] = []
        try:
            with self.engine.begin() as connection:
                for start in range(0, len(batch.records), _CHUNK):
                    chunk = batch.records[start : start + _CHUNK]
                    insert_rows(connection, row_values(chunk, bad, connection.dialect))
                _set_offset(connection, batch.name, batch.end)
        except OperationalError:
            raise
        except Exception:
            bad = self._store_one_by_one(batch.records)
            with self.engine.begin() as connection:
                _set_offset(connection, batch.name, batch.end)
        self._reject(bad)
        return batch.end

    def check(self) -> None:
        """Raises the database's error if it cannot store entries (no schema, unreachable)."""
        with self.engine.connect() as connection:
            connection.execute(select(PROGRESS.c.spool).limit(0)).all()

    def stored_offsets(self, names: Iterable[str]) -> dict[str, int]:
        """How many bytes of each named file are stored (files never stored are left out)."""
        wanted = list(names)
        if not wanted:
            return {}
        query = select(PROGRESS.c.spool, PROGRESS.c.stored).where(PROGRESS.c.spool.in_(wanted))
        with self.engine.connect() as connection:
            return {name: stored for name, stored in connection.execute(query)}

    def forget(self, name: str) -> None:
        """The file is removed: its offset is no longer needed."""
        with self.engine.begin() as connection:
            connection.execute(delete(PROGRESS).where(PROGRESS.c.spool == name))

    def _store_one_by_one(self, lines: list[bytes]) -> list[Refused]:
        refused: list[Refused] = []
        for line in lines:
            try:
                with self.engine.begin() as connection:
                    insert_rows(connection, row_values([line], refused, connection.dialect))
            except OperationalError:
                raise
            except Exception as err:
                refused.append((line, str(getattr(err, "orig", None) or err)))
        return refused

    def _reject(self, bad: list[Refused]) -> None:
        if not bad:
            return
        path = self.folder / REJECTED
        with path.open("ab") as handle:
            for line, reason in bad:
                handle.write(line.rstrip(b"\n") + b"\n")
                log.error(
                    "decision log: the database refused an entry (kept in %s): %s", path, reason
                )


def _insert(connection: Connection, lines: list[bytes], pause: float = 0.0) -> list[Refused]:
    """Insert the entries in `lines` (one COPY on PostgreSQL), resting `pause` seconds
    between slices of `_CHUNK` entries; the lines that are no entry."""
    bad: list[Refused] = []
    dialect = connection.dialect
    if dialect.name == "postgresql":
        copy_rows(connection, TABLE, COLUMNS, _copy_values(lines, bad), pause=pause, every=_CHUNK)
    else:
        for start in range(0, len(lines), _CHUNK):
            if start and pause:
                time.sleep(pause)
            insert_rows(connection, row_values(lines[start : start + _CHUNK], bad, dialect))
    return bad


def _move_offset(connection: Connection, batch: Pending) -> int | None:
    """Move the stored offset of `batch.name` from `batch.start` to `batch.end`.

    Returns:
        None if it moved; else the offset it has, which another transaction set. On
        PostgreSQL, a transaction of another drainer still committing is waited for.
    """
    moved = connection.execute(
        _UPSERT_OFFSET, {"spool": batch.name, "start": batch.start, "end": batch.end}
    ).first()
    if moved:
        return None
    return connection.scalar(select(PROGRESS.c.stored).where(PROGRESS.c.spool == batch.name))


def _set_offset(connection: Connection, name: str, offset: int) -> None:
    connection.execute(_UPSERT_OFFSET_ANYWAY, {"spool": name, "end": offset})


def insert_rows(connection: Connection, values: list[tuple]) -> None:
    """Insert spool rows (`row_values`) into `decisions`, skipping ids already stored.

    One driver-level executemany: the JSON columns arrive as JSON text and are stored as is,
    so the storer never decodes and re-encodes them (a third of its cost).
    """
    if values:
        connection.exec_driver_sql(_insert_sql(connection.dialect.name), values)


@functools.cache
def _insert_sql(dialect: str) -> str:
    marker = {"sqlite": "?", "postgresql": "%s"}[dialect]
    values = [
        f"{marker}::json" if dialect == "postgresql" and name in JSON_COLUMNS else marker
        for name in COLUMNS
    ]
    # PostgreSQL's partitioned table has no unique index on id alone (its key is (id, kept,
    # at)): any conflict there is the same entry, stored already, as a spool line never changes.
    target = "" if dialect == "postgresql" else " (id)"
    return (
        f"INSERT INTO {TABLE.name} ({', '.join(COLUMNS)}) VALUES ({', '.join(values)}) "
        f"ON CONFLICT{target} DO NOTHING"
    )
