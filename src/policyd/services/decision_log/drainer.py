"""Drains a spool folder into the decision log: one pass over its files, or passes in a loop."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from policyd.logs import Outage
from policyd.services.decision_log.codec import entry_time
from policyd.services.decision_log.storer import Storer
from policyd.store.spool import SpoolFile, open_files, peek_files

log = logging.getLogger(__name__)

DRAIN_INTERVAL = 0.5  # seconds between passes (POLICYD_DECISION_LOG_INTERVAL)
# Seconds a drainer's pass rests between the slices of entries it stores (32): its core
# goes idle often, so the scheduler moves requests waiting on the other core onto it. A pass
# at idle CPU priority that ran for milliseconds on end held its core all along (only an
# idle core pulls waiting work), and requests queued behind each other on the other one.
SLICE_PAUSE = 0.0003
_READ = 1 << 20  # bytes of a file read, and stored in one transaction, at a time
_COUNT = 64 << 20  # bytes whose entries `lag` counts; past that it estimates


@dataclass(frozen=True)
class Lag:
    """How far the decision log is behind what this host's processes spooled."""

    files: int  # spool files in the folder
    bytes: int  # spooled but not stored
    entries: int  # entries in those bytes (estimated past 64 MiB)
    oldest_at: datetime | None  # when the oldest unstored entry was decided
    estimated: bool = False

    def seconds(self, now: datetime) -> float:
        """Age of the oldest unstored entry; 0 when nothing waits."""
        return max(0.0, (now - self.oldest_at).total_seconds()) if self.oldest_at else 0.0

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "pending_bytes": self.bytes,
            "pending_entries": self.entries,
            "pending_entries_estimated": self.estimated,
            "oldest_pending_at": self.oldest_at.isoformat() if self.oldest_at else None,
            "oldest_pending_seconds": round(self.seconds(now), 3),
            "spool_files": self.files,
        }


class Drainer:
    """Stores what every process on this host spooled into `folder`, each entry once.

    A pass stores each file from the offset the database holds for it up to the size it had
    when the pass began, and removes the files their writers released once they are stored.
    Several drainers may run over one folder (a sidecar, a worker, a read catching up): the
    offsets, moved in the transaction that stores the entries, keep each entry stored once.
    """

    def __init__(self, engine: Engine, folder: str | os.PathLike[str]):
        self.folder = Path(folder).resolve()
        self.storer = Storer(engine, self.folder)
        self._offsets: dict[str, int] = {}  # live files: where this drainer has stored to
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _guard(self) -> threading.Lock:
        # A pass running in another thread at fork time would leave the lock held in the child.
        if self._pid != os.getpid():
            self._pid, self._lock, self._offsets = os.getpid(), threading.Lock(), {}
        return self._lock

    def drain(
        self, *, limit: int | None = None, only: str | None = None, pause: float = 0.0
    ) -> int:
        """One pass: store what is spooled now; the number of entries handled.

        Args:
            limit: stop after about this many bytes (a read catching up stays short).
            only: the name of the one file to drain (a process that stops drains its own).
            pause: seconds to rest after each slice of entries inserted (`SLICE_PAUSE` for
                a drainer beside the servers; a read catching up does not rest).

        Raises:
            OperationalError: the database is unavailable; what is not stored stays spooled.
        """
        with self._guard():
            files: list[SpoolFile] = []
            try:
                for file in open_files(self.folder):
                    if only is None or file.name == only:
                        files.append(file)
                    else:
                        file.close()  # and its lock, for the drainer whose file it is
                return self._drain_files(files, limit, pause)
            finally:
                for file in files:
                    file.close()

    def _drain_files(self, files: list[SpoolFile], limit: int | None, pause: float) -> int:
        unknown = [f.name for f in files if f.released or f.name not in self._offsets]
        offsets = self._offsets | self.storer.stored_offsets(unknown)
        self._offsets = {f.name: offsets.get(f.name, 0) for f in files if not f.released}
        handled, budget = 0, limit
        for file in files:
            count, used = self._drain_file(file, offsets.get(file.name, 0), budget, pause)
            handled += count
            if budget is not None:
                budget -= used
                if budget <= 0:
                    break
        return handled

    def _drain_file(
        self, file: SpoolFile, offset: int, budget: int | None, pause: float
    ) -> tuple[int, int]:
        """Store `file` from `offset`; (entries handled, bytes read). A released file that
        holds no complete record past its stored offset any more is removed."""
        goal, handled, start = file.size(), 0, offset
        while offset < goal:
            chunk = _READ if budget is None else max(1, min(_READ, budget - (offset - start)))
            batch = file.read(offset, goal, chunk)
            if batch is None:
                break
            offset, count = self.storer.store(batch, pause)
            handled += count
            if not file.released:
                self._offsets[file.name] = offset
            if budget is not None and offset - start >= budget:
                return handled, offset - start
        if file.released:
            # Its writer is gone and wrote nothing after `goal`; a torn last line (a crash
            # mid-write) is no entry.
            file.remove()
            self.storer.forget(file.name)
            if handled:
                log.info("decision log: stored %d entries of %s, removed it", handled, file.name)
        return handled, offset - start

    def run(self, stop: threading.Event, interval: float = DRAIN_INTERVAL) -> None:
        """Drain every `interval` seconds, resting `SLICE_PAUSE` after each slice, until
        `stop` is set; errors are logged once per outage and the pass is retried."""
        outage = Outage(
            log,
            "decision log: storing spooled entries failed; retrying",
            "decision log: storing spooled entries again",
        )
        while True:
            try:
                self.drain(pause=SLICE_PAUSE)
            except Exception:
                outage.failed()
            else:
                outage.succeeded()
            if stop.wait(interval):
                return

    def lag(self, *, count: int = _COUNT) -> Lag:
        """What waits in the folder now (read without locks; a drainer may be at work).
        Entries are counted in the first `count` bytes that wait, and estimated past them."""
        files: list[SpoolFile] = []
        try:
            files.extend(peek_files(self.folder))  # kept as they open: closed below whatever
            offsets = self.storer.stored_offsets(f.name for f in files)
            pending = entries = counted = 0
            oldest: datetime | None = None
            for file in files:
                start, size = offsets.get(file.name, 0), file.size()
                if size <= start:
                    continue
                pending += size - start
                end = min(size, start + max(0, count - counted))
                entries += file.count(start, end)
                counted += end - start
                line = file.oldest(start)
                at = entry_time(line) if line else None
                if at is not None and (oldest is None or at < oldest):
                    oldest = at
        finally:
            for file in files:
                file.close()
        estimated = counted < pending
        if estimated and counted:
            entries = round(entries * pending / counted)
        return Lag(len(files), pending, entries, oldest, estimated)


def default_folder(engine: Engine) -> Path:
    """Beside a SQLite file (`<file>.spool`), else `<temp dir>/policyd-spool-<database hash>`."""
    url = engine.url
    if engine.dialect.name == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            return Path(f"{database}.spool").resolve()
    identity = url.set(password=None).render_as_string(hide_password=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"policyd-spool-{digest}"
