"""The decision log: entries spooled to a local file per process, stored by drainers.

`codec` turns an entry into its spool line, `storer` inserts lines exactly once (the one
storer), `drainer` runs it over a spool folder. Who drains is the deployment's choice
(docs/storage.md): `policyd decision-log drain`, `policyd worker` on the same host, or a
thread of the process itself (`policyd serve`).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from policyd.periodic import WORKER, TaskContext, periodic_task
from policyd.services.decision_log.codec import JsonText, compact_encoder, decode, encode
from policyd.services.decision_log.drainer import (
    DRAIN_INTERVAL,
    SLICE_PAUSE,
    Drainer,
    Lag,
    default_folder,
)
from policyd.services.decision_log.retention import drop_expired_entries, ensure_partitions
from policyd.services.decision_log.storer import REJECTED, insert_rows
from policyd.store.spool import Spool

log = logging.getLogger(__name__)

CATCH_UP_BYTES = 4 << 20  # what a read stores at most before it answers (about 4,000 entries)
LAG_CHECK = 60.0  # seconds between checks of a process that does not drain itself
LAG_WARNING = 60.0  # an unstored entry older than this is worth an operator's look


class DecisionLog:
    """Writes decision-log entries for POST /v1/decisions, and says how far behind they are.

    `append` writes the entry to this process's spool file (one `os.write`, no fsync): it is
    durable once that returns, as long as the host is. A drainer stores it. With `drain`, a
    thread of this process drains the folder every `interval` seconds (`policyd serve`);
    otherwise the deployment runs one, and a thread of this process checks every minute how
    far behind the log is and logs a warning while the oldest entry waits for over a minute.
    """

    def __init__(
        self,
        engine: Engine,
        folder: str | os.PathLike[str] | None = None,
        *,
        interval: float = DRAIN_INTERVAL,
        drain: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.engine = engine
        self.spool = Spool(folder or default_folder(engine))
        self.drainer = Drainer(engine, self.spool.folder)
        self.interval = interval
        self.drains = drain
        self.clock = clock
        self._allow_nan = engine.dialect.name != "postgresql"
        self._strict = engine.dialect.name == "postgresql"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start this process's thread: the drainer (`drain`), or the lag check."""
        if self._thread is not None:
            return
        target, name = (
            (_drain_forever, "policyd-decision-log-drain")
            if self.drains
            else (_watch_lag, "policyd-decision-log-lag")
        )
        self._thread = threading.Thread(
            target=target, args=(weakref.ref(self), self._stop), name=name, daemon=True
        )
        self._thread.start()

    def after_fork(self) -> None:
        """In a process forked from this one (a gunicorn worker of a preloaded app): the
        parent's thread did not come along; start this process's own."""
        self._stop, self._thread = threading.Event(), None
        self.start()

    def append(self, entry: dict[str, Any]) -> None:
        """Spool one entry (a `decisions` row).

        Raises:
            InvalidError: the database would refuse a value in it.
            OSError: the spool file could not be written (disk full): nothing is logged.
        """
        self.spool.append(encode(entry, allow_nan=self._allow_nan, strict=self._strict))

    def catch_up(self) -> int:
        """Store what this host spooled so far (up to `CATCH_UP_BYTES`), so that a read sees
        the decisions answered here a moment ago; the number of entries handled."""
        return self.drainer.drain(limit=CATCH_UP_BYTES)

    def drain(self) -> int:
        """Store everything spooled into this folder now (what the drain thread runs)."""
        return self.drainer.drain()

    def lag(self) -> Lag:
        """How far the log is behind what this host spooled."""
        return self.drainer.lag()

    def close(self) -> None:
        """Stop the thread and release this process's spool file, storing what it holds (with
        `drain`, the whole folder once more) so that a clean stop leaves nothing behind."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()
        released = self.spool.close()
        if released is None and not self.drains:
            return
        try:
            self.drainer.drain(only=None if self.drains else released)
        except OperationalError:
            log.warning("decision log: the database is unavailable; entries stay spooled")


def _drain_forever(ref: weakref.ref[DecisionLog], stop: threading.Event) -> None:
    decision_log = ref()
    if decision_log is None:
        return
    drainer, interval = decision_log.drainer, decision_log.interval
    del decision_log  # the thread must not keep its app alive
    drainer.run(stop, interval)


def _watch_lag(ref: weakref.ref[DecisionLog], stop: threading.Event) -> None:
    """Every `LAG_CHECK` seconds: warn while the oldest unstored entry is older than
    `LAG_WARNING` (no drainer runs on this host, or it cannot keep up), once per episode."""
    behind = False
    while not stop.wait(LAG_CHECK):
        decision_log = ref()
        if decision_log is None:
            return  # its app is gone
        try:
            behind = check_lag(decision_log, behind)
        except Exception:
            log.debug("decision log: could not measure the lag", exc_info=True)
        del decision_log


@periodic_task("decision-log.prune", every=timedelta(hours=1), processes=frozenset({WORKER}))
def prune_decision_log(context: TaskContext, now: datetime) -> int:
    """Delete decision-log entries older than POLICYD_DECISION_LOG_RETENTION days."""
    if context.decision_log_retention <= 0:
        return 0
    with context.sessions() as session:
        return drop_expired_entries(session, now, context.decision_log_retention)


@periodic_task("decision-log.partitions", every=timedelta(hours=6), processes=frozenset({WORKER}))
def prepare_partitions(context: TaskContext, now: datetime) -> int:
    """Create this month's and next month's decision-log partitions ahead (PostgreSQL)."""
    with context.sessions() as session:
        return len(ensure_partitions(session, now))


@periodic_task(
    "decision-log.drain",
    every=timedelta(seconds=DRAIN_INTERVAL),  # POLICYD_DECISION_LOG_INTERVAL
    lane="decision-log",  # its own thread: a long sweep never holds the log up
    # `policyd serve`'s app drains its own spool (POLICYD_DECISION_LOG_DRAIN=thread).
    processes=frozenset({WORKER}),
)
def drain_decision_log(context: TaskContext, now: datetime) -> int:
    """Store the decision-log entries this host's servers spooled, each exactly once."""
    return context.drainer.drain(pause=SLICE_PAUSE) if context.drainer is not None else 0


def check_lag(decision_log: DecisionLog, behind: bool) -> bool:
    """Log a warning if the log has fallen behind (and was not before), or that it caught
    up; whether it is behind now."""
    now = decision_log.clock()
    lag = decision_log.lag()
    late = lag.seconds(now) > LAG_WARNING
    if late and not behind:
        log.warning(
            "decision log: %d entries (%d bytes) in %s are not stored; the oldest is %.0f s old."
            " Run `policyd decision-log drain` or `policyd worker` on this host (docs/storage.md)",
            lag.entries,
            lag.bytes,
            decision_log.spool.folder,
            lag.seconds(now),
        )
    elif behind and not late:
        log.info("decision log: caught up (%d bytes wait)", lag.bytes)
    return late


__all__ = [
    "DRAIN_INTERVAL",
    "REJECTED",
    "SLICE_PAUSE",
    "DecisionLog",
    "Drainer",
    "JsonText",
    "Lag",
    "check_lag",
    "compact_encoder",
    "decode",
    "default_folder",
    "drain_decision_log",
    "drop_expired_entries",
    "encode",
    "ensure_partitions",
    "insert_rows",
]
