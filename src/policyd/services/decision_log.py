"""The decision log's writer: entries spooled to a local file, bulk-inserted in the background."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import suppress
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import String, Table, delete, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from policyd.services.errors import InvalidError
from policyd.store.models import DecisionRecord, SpoolProgress
from policyd.store.query import copy_rows
from policyd.store.spool import Pending, Spool

log = logging.getLogger(__name__)

TABLE: Table = DecisionRecord.__table__
PROGRESS: Table = SpoolProgress.__table__
_COLUMNS = tuple(c.name for c in TABLE.columns)
_JSON_COLUMNS = ("matched", "input", "result")  # spooled and inserted as JSON text
_HEAD = frozenset(_COLUMNS) - frozenset(_JSON_COLUMNS)
_ENCODERS = {  # by allow_nan
    nan: json.JSONEncoder(allow_nan=nan, separators=(",", ":"), check_circular=False)
    for nan in (True, False)
}
# Text columns and their lengths. PostgreSQL refuses longer values and NUL characters (SQLite
# stores anything); entries are checked before they are spooled, because a row the flusher
# could never insert must be the caller's 422, as it is in sync mode.
_TEXT = {c.name: c.type.length for c in TABLE.columns if isinstance(c.type, String)}
_BATCH = 1000  # entries per transaction when sweeping
_CHUNK = 32  # entries per statement
REJECTED = "rejected.txt"  # spool lines the database refused after all: kept, never dropped
MALFORMED = "a value is too long or malformed for the database"  # as api.errors says on DataError


class JsonText(str):
    """The JSON text of a JSON column's value, encoded already (compact, ASCII, no NaN):
    `encode` spools it as it is instead of encoding the value again."""


class LogMode(StrEnum):
    SYNC = "sync"  # in the request's transaction, committed before the answer
    SPOOL = "spool"  # appended to this process's spool file, inserted within `interval`


class Storer(StrEnum):
    """Who stores a process's spooled entries (spool mode)."""

    PROCESS = "process"  # the folder's shipper process, at idle CPU priority (log_shipper.py)
    THREAD = "thread"  # a thread of the process itself, at the priority of its requests
    NONE = "none"  # only explicit flush() and sweep() calls (the shipper's own DecisionLog)


def default_storer() -> Storer:
    """`process` where the OS has an idle scheduling class (Linux), else `thread`."""
    return Storer.PROCESS if hasattr(os, "SCHED_IDLE") else Storer.THREAD


class DecisionLog:
    """Stores decision-log entries for POST /v1/decisions.

    In `spool` mode, `append` writes the entry to this process's spool file (one `os.write`,
    no fsync). By default (`storer` process) a separate shipper process per spool folder, run
    at idle CPU priority, inserts every process's spooled entries every `interval` seconds and
    sweeps released files; this process only keeps one running. With `storer` thread, a
    background thread of this process inserts its entries every `interval` seconds and sweeps
    files left by dead processes every `sweep_interval` seconds. Either way the files of dead
    processes are swept at start. Each transaction that stores entries of a spool file also
    moves that file's offset in `spool_progress`, so a replay resumes exactly after what was
    committed and the entries can go in with a plain COPY (PostgreSQL). Should a replay meet
    an id stored already anyway, the batch is stored again with inserts that skip stored ids.
    In `sync` mode the caller inserts the entry in its own transaction (`spooled` is False).
    """

    def __init__(
        self,
        engine: Engine,
        mode: LogMode | str = LogMode.SPOOL,
        folder: str | os.PathLike[str] | None = None,
        *,
        interval: float = 0.1,
        sweep_interval: float = 10.0,
        storer: Storer | str | None = None,
    ):
        self.engine = engine
        try:
            self.mode = LogMode(mode)
        except ValueError:
            raise ValueError(f"POLICYD_DECISION_LOG is sync or spool, not {mode!r}") from None
        try:
            self.storer = default_storer() if storer in (None, "") else Storer(storer)
        except ValueError:
            raise ValueError(
                f"POLICYD_DECISION_LOG_STORER is process, thread or none, not {storer!r}"
            ) from None
        self.interval = interval
        self.sweep_interval = sweep_interval
        self.spool: Spool | None = None
        folder = folder or default_folder(engine)
        if self.mode is LogMode.SPOOL and folder is None:
            self.mode = LogMode.SYNC  # in-memory SQLite: the log dies with the process anyway
        if self.mode is LogMode.SPOOL:
            self.spool = Spool(folder, handoff=self.storer is Storer.PROCESS)
        self._allow_nan = engine.dialect.name != "postgresql"
        self._strict = engine.dialect.name == "postgresql"
        self._init_process()

    @property
    def spooled(self) -> bool:
        return self.spool is not None

    def _init_process(self) -> None:
        self._pid = os.getpid()
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.shipper: subprocess.Popen[bytes] | None = None  # the one this process started

    def start(self) -> None:
        """Sweep dead processes' spools now, then keep a shipper running (`storer` process)
        or flush in a background thread (`storer` thread)."""
        if self.spool is None:
            return
        try:
            self.sweep()
        except OperationalError:
            log.warning("decision log: the database is unavailable; the sweep will retry")
        self._start_thread()

    def _start_thread(self) -> None:
        if self.storer is Storer.NONE:
            return
        if self.storer is Storer.PROCESS:
            target, name = _watch_shipper, "policyd-decision-log-watch"
        else:
            target, name = _flush_forever, "policyd-decision-log"
        self._thread = threading.Thread(
            target=target,
            args=(weakref.ref(self), self._stop, self.interval, self.sweep_interval),
            name=name,
            daemon=True,
        )
        self._thread.start()

    def ensure_shipper(self) -> bool:
        """With `storer` process: start the folder's shipper unless one runs (or nothing is
        spooled here yet). True if a shipper runs now."""
        from policyd.services.log_shipper import shipper_running, start_shipper

        if self.spool is None or self.storer is not Storer.PROCESS:
            return False
        if self.shipper is not None:
            if self.shipper.poll() is None:
                # Still running, or still starting: a busy machine may keep an idle-priority
                # process waiting for its first CPU time, and one must not start another
                # every check meanwhile.
                return True
            self.shipper = None  # it exited (idle, killed, or another one serves): reaped
        if shipper_running(self.spool.folder):
            return True
        if self.spool.written() is None:
            return False  # nothing to ship yet; the first append makes the file
        self.shipper = start_shipper(self.engine, self.spool.folder, self.interval)
        return True

    def append(self, entry: dict[str, Any]) -> None:
        """Spool one entry (a `decisions` row); it reaches the database within `interval`.

        Raises:
            InvalidError: the database would refuse a value in it.
        """
        assert self.spool is not None, "sync mode: insert the entry in the caller's transaction"
        line = encode(entry, allow_nan=self._allow_nan, strict=self._strict)
        self._after_fork()
        self.spool.append(line)

    def _after_fork(self) -> None:
        """A forked child (gunicorn --preload) gets fresh locks and a flusher of its own."""
        if self._pid != os.getpid():
            self._init_process()
            self._start_thread()

    def flush(self) -> int:
        """Insert what this process has spooled so far; the number of entries handled.

        Entries appended meanwhile wait for the next call: under load, chasing them would
        run one small transaction after another, whose fixed cost then dwarfs the rows'.
        """
        if self.spool is None:
            return 0
        self._after_fork()
        handled = 0
        with self._flushing:
            goal = self.spool.written()
            if goal is not None and self.storer is Storer.PROCESS:
                self.spool.advance(self._stored_offset(goal[0]))  # what the shipper stored
            while (batch := self.spool.unstored()) is not None:
                stored, count = self._store(batch)
                handled += count
                removed = self.spool.advance(stored)
                if removed:
                    self._forget(removed)
                if goal is None or batch.name != goal[0] or stored >= goal[1]:
                    break
            return handled

    def sweep(self) -> int:
        """Insert the entries in spool files of dead processes, then remove those files."""
        if self.spool is None:
            return 0
        handled = 0
        for orphan in self.spool.orphans():
            stored = 0
            try:
                offset = max(orphan.stored_bytes(), self._stored_offset(orphan.name))
                while (batch := orphan.batch(offset, _BATCH)) is not None:
                    offset, count = self._store(batch)
                    stored += count
            except BaseException:
                orphan.release()
                raise
            orphan.remove()
            self._forget(orphan.name)
            handled += stored
            log.info("decision log: stored %d entries left by %s", stored, orphan.name)
        return handled

    def close(self) -> None:
        """Stop the flusher, store what this process spooled and release its spool file (with
        `storer` process, the shipper removes it)."""
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join()
        # A shipper this process started outlives it: other processes may still spool, and
        # it exits once the folder holds no spool file for a while.
        if self.spool is None:
            return
        try:
            self.flush()
        except OperationalError:
            log.warning("decision log: the database is unavailable; entries stay spooled")
        removed = self.spool.close()
        if removed:
            with suppress(OperationalError):  # a row left behind only takes a few bytes
                self._forget(removed)

    def _store(self, batch: Pending) -> tuple[int, int]:
        """Store `batch` and move its file's offset to `batch.end`, in one transaction.

        Returns:
            The file's stored offset (`batch.end`, or where a previous transaction had got to
            already when that is further: a commit whose answer was lost, a dead owner's),
            and the number of entries handled (stored or rejected) by this call.
        """
        bad: list[tuple[bytes, str]] = []
        try:
            with self.engine.begin() as connection:
                stored = _move_offset(connection, batch)
                if stored is None:
                    bad = self._insert(connection, batch.records)
        except OperationalError:
            raise  # the database is unreachable or busy: everything stays spooled for a retry
        except Exception:
            stored = batch.start  # a refused row, or an id stored already: see below
        if stored is None:
            if bad:
                self._reject(bad)
            return batch.end, len(batch.records)
        if stored > batch.start:
            return stored, 0  # nothing of this batch is new (that transaction stored nothing)
        # The offset is behind this batch's start (a spool of an older version, which kept
        # its offsets beside the file only), or some row was refused: insert the batch again
        # skipping ids that are stored, find any refused row, then set the offset.
        try:
            with self.engine.begin() as connection:
                for start in range(0, len(batch.records), _CHUNK):
                    insert_rows(connection, _decoded(batch.records[start : start + _CHUNK], bad))
                _set_offset(connection, batch.name, batch.end)
        except OperationalError:
            raise
        except Exception:
            bad = self._store_one_by_one(batch.records)
            with self.engine.begin() as connection:
                _set_offset(connection, batch.name, batch.end)
        if bad:
            self._reject(bad)
        return batch.end, len(batch.records)

    def _insert(self, connection: Connection, lines: list[bytes]) -> list[tuple[bytes, str]]:
        """Insert the entries in `lines`; the lines that are no entry."""
        bad: list[tuple[bytes, str]] = []
        if connection.dialect.name == "postgresql":
            copy_rows(connection, TABLE, _COLUMNS, _copy_rows(lines, bad))
        else:
            # Small chunks: the thread then holds the GIL for a fraction of a millisecond at
            # a time, and requests of its process do not queue behind it (the p99).
            for start in range(0, len(lines), _CHUNK):
                insert_rows(connection, _decoded(lines[start : start + _CHUNK], bad))
        return bad

    def _stored_offset(self, name: str) -> int:
        with self.engine.connect() as connection:
            return _stored_offset(connection, name) or 0

    def _forget(self, name: str) -> None:
        """The file is gone: its offset is no longer needed."""
        with self.engine.begin() as connection:
            connection.execute(delete(PROGRESS).where(PROGRESS.c.spool == name))

    def _store_one_by_one(self, lines: list[bytes]) -> list[tuple[bytes, str]]:
        refused: list[tuple[bytes, str]] = []
        for line in lines:
            rows = _decoded([line], refused)
            try:
                with self.engine.begin() as connection:
                    insert_rows(connection, rows)
            except OperationalError:
                raise
            except Exception as err:
                refused.append((line, str(getattr(err, "orig", None) or err)))
        return refused

    def _reject(self, bad: list[tuple[bytes, str]]) -> None:
        assert self.spool is not None
        path = self.spool.folder / REJECTED
        with path.open("ab") as handle:
            for line, reason in bad:
                handle.write(line.rstrip(b"\n") + b"\n")
                log.error(
                    "decision log: the database refused an entry (kept in %s): %s", path, reason
                )


def _decoded(lines: list[bytes], bad: list[tuple[bytes, str]]) -> list[dict[str, Any]]:
    """The rows in `lines`; lines that are no entry are added to `bad`."""
    rows = []
    for line in lines:
        try:
            rows.append(decode(line))
        except (ValueError, KeyError, TypeError):
            bad.append((line, "not a decision-log entry"))
    return rows


def _move_offset(connection: Connection, batch: Pending) -> int | None:
    """Move the stored offset of `batch.name` from `batch.start` to `batch.end`.

    Returns:
        None if it moved; else the offset it has, which another transaction set. On
        PostgreSQL, a transaction of a dead owner still committing is waited for.
    """
    moved = connection.execute(
        _UPSERT_OFFSET, {"spool": batch.name, "start": batch.start, "end": batch.end}
    ).first()
    return None if moved else _stored_offset(connection, batch.name)


def _set_offset(connection: Connection, name: str, offset: int) -> None:
    connection.execute(_UPSERT_OFFSET_ANYWAY, {"spool": name, "end": offset})


def _stored_offset(connection: Connection, name: str) -> int | None:
    return connection.scalar(select(PROGRESS.c.stored).where(PROGRESS.c.spool == name))


_UPSERT = (
    "INSERT INTO spool_progress (spool, stored) VALUES (:spool, :end) "
    "ON CONFLICT (spool) DO UPDATE SET stored = excluded.stored"
)
_UPSERT_OFFSET = text(f"{_UPSERT} WHERE spool_progress.stored = :start RETURNING stored")
_UPSERT_OFFSET_ANYWAY = text(_UPSERT)


def default_folder(engine: Engine) -> Path | None:
    """Beside a SQLite file (`<file>.spool`), else `<temp dir>/policyd-spool-<database hash>`;
    None for an in-memory SQLite database."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            return Path(f"{url.database}.spool").resolve()
        return None
    import hashlib
    import tempfile

    identity = url.set(password=None).render_as_string(hide_password=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"policyd-spool-{digest}"


def insert_rows(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert decoded spool rows into `decisions`, skipping ids that are already stored.

    One driver-level executemany: the JSON columns arrive as JSON text and are stored as is,
    so the flusher never decodes and re-encodes them (a third of its cost).
    """
    if not rows:
        return
    dialect = connection.dialect
    # The column type's whole processing (to the driver's text on SQLite), as SQLAlchemy binds
    # it everywhere else: the same text for the same moment, so comparisons hold.
    at = TABLE.c.at.type.dialect_impl(dialect).bind_processor(dialect)
    params = [
        tuple(at(row[name]) if name == "at" else row[name] for name in _COLUMNS) for row in rows
    ]
    connection.exec_driver_sql(_insert_sql(dialect.name), params)


@functools.cache
def _insert_sql(dialect: str) -> str:
    marker = {"sqlite": "?", "postgresql": "%s"}[dialect]
    values = [
        f"{marker}::json" if dialect == "postgresql" and name in _JSON_COLUMNS else marker
        for name in _COLUMNS
    ]
    return (
        f"INSERT INTO {TABLE.name} ({', '.join(_COLUMNS)}) VALUES ({', '.join(values)}) "
        "ON CONFLICT (id) DO NOTHING"
    )


def encode(entry: dict[str, Any], *, allow_nan: bool, strict: bool) -> bytes:
    """One spool line for a `decisions` row: its plain columns as a JSON object, then each
    JSON column's text, separated by tabs (JSON text never holds a raw tab or newline).

    Raises:
        InvalidError: with `strict` (PostgreSQL), a text value the column refuses (too long,
            NUL characters); without `allow_nan`, NaN or infinity in the JSON columns.
    """
    if strict:
        for name, limit in _TEXT.items():
            value = entry.get(name)
            if isinstance(value, str) and ("\x00" in value or (limit and len(value) > limit)):
                raise InvalidError(MALFORMED)
    head = {name: entry[name] for name in _HEAD}
    head["at"] = entry["at"].isoformat()
    encoder = _ENCODERS[allow_nan]
    try:
        parts = [encoder.encode(head)]
        for name in _JSON_COLUMNS:
            value = entry[name]
            parts.append(value if type(value) is JsonText else encoder.encode(value))
    except ValueError:
        raise InvalidError(MALFORMED) from None
    return "\t".join(parts).encode("ascii") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """The row in a spool line, its JSON columns still as text.

    Raises:
        ValueError: not a line `encode` wrote.
    """
    row = _parse(line)
    row["at"] = datetime.fromisoformat(row["at"])
    return row


def _parse(line: bytes) -> dict[str, Any]:
    """`decode` with `at` left as its ISO 8601 text."""
    head, *documents = line.decode("ascii").split("\t")
    row = json.loads(head)
    if len(documents) != len(_JSON_COLUMNS) or not isinstance(row, dict) or row.keys() != _HEAD:
        raise ValueError("not a decision-log entry")
    if not isinstance(row["at"], str):
        raise TypeError("not a decision-log entry")
    row.update(zip(_JSON_COLUMNS, documents, strict=True))
    return row


def _copy_rows(lines: list[bytes], bad: list[tuple[bytes, str]]) -> Iterator[list[Any]]:
    """The `_COLUMNS` values of the entries in `lines`, for COPY: `at` stays ISO 8601 text
    with its UTC offset (a timestamptz takes it as it is), the JSON columns stay text; lines
    that are no entry are added to `bad`."""
    for line in lines:
        try:
            row = _parse(line)
        except (ValueError, KeyError, TypeError):
            bad.append((line, "not a decision-log entry"))
            continue
        yield [row[name] for name in _COLUMNS]


def _watch_shipper(
    ref: weakref.ref[DecisionLog], stop: threading.Event, interval: float, sweep_interval: float
) -> None:
    """Keep the folder's shipper running while this process spools (storer process)."""
    check = min(1.0, sweep_interval)
    failing = False
    while True:
        decision_log = ref()
        if decision_log is None:
            return  # its app is gone
        try:
            decision_log.ensure_shipper()
            failing = False
        except Exception:
            if not failing:
                log.exception(
                    "decision log: could not start the shipper; this process stores its own "
                    "entries until one runs"
                )
            failing = True
        if failing:
            with suppress(Exception):  # the database may be down as well: retried next check
                decision_log.flush()
                decision_log.sweep()  # files this process released
        del decision_log
        if stop.wait(check):
            return


def _flush_forever(
    ref: weakref.ref[DecisionLog], stop: threading.Event, interval: float, sweep_interval: float
) -> None:
    next_sweep = time.monotonic() + sweep_interval
    failing = False
    while not stop.wait(interval):
        decision_log = ref()
        if decision_log is None:
            return  # its app is gone
        try:
            decision_log.flush()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + sweep_interval
                decision_log.sweep()
            failing = False
        except Exception:
            if not failing:  # once per outage, not every tick
                log.exception("decision log: storing spooled entries failed; retrying")
            failing = True
        del decision_log


__all__ = [
    "DecisionLog",
    "JsonText",
    "LogMode",
    "Storer",
    "decode",
    "default_folder",
    "encode",
    "insert_rows",
]
