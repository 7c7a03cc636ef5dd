"""The decision-log shipper: one process per spool folder stores every process's spooled
entries, at idle CPU priority, so that storing them never competes with answering requests.

Started by the first process that spools into a folder (`DecisionLog.ensure_shipper`), kept
running by each of them, and elected by an exclusive lock on `<folder>/shipper.lock`: a second
one started meanwhile exits at once. It stores the files of live processes from the offset the
database holds for each (`spool_progress`, moved in the transaction that inserts the entries,
as the flusher thread does), and sweeps released files: those of dead processes, and files
their owner rotated or closed. It exits once the folder has held no spool file for a while.

Run as `python -m policyd.services.log_shipper --folder F`, the database URL in the
environment (POLICYD_DATABASE_URL), never on the command line where `ps` would show its
password.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from policyd.settings import Settings, environment

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

LOCK = "shipper.lock"
_READ = 1 << 20  # bytes of a live file read (and stored in one transaction) at a time
_LOCK_TRIES = 20  # a starting shipper retries the lock this often, 50 ms apart (shipper_running)

log = logging.getLogger(__name__)


def shipper_running(folder: Path) -> bool:
    """Whether a shipper holds `folder`'s lock. Probes with a shared lock, which a starting
    shipper's exclusive attempt may meet for a moment: it retries for a second."""
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def start_shipper(engine: Engine, folder: Path, interval: float) -> subprocess.Popen[bytes]:
    """Start a shipper for `folder` storing into `engine`'s database (it exits at once if
    another one runs). In a process group of its own, so that a signal to this process's
    group (Ctrl-C in a terminal) does not stop it, but in the same session: where Linux
    groups the processes of a session for scheduling (autogroup), a new session would make
    the shipper a group of its own that gets as much CPU as all the servers together, and its
    idle priority would only rank it within that group."""
    url = engine.url.render_as_string(hide_password=False)
    command = [sys.executable, "-m", "policyd.services.log_shipper", "--folder", str(folder)]
    command += ["--interval", str(interval)]
    return subprocess.Popen(
        command,
        env={**environment(), "POLICYD_DATABASE_URL": url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        process_group=0,
        close_fds=True,
    )


def take_lock(folder: Path) -> int | None:
    """The folder's shipper lock (a file descriptor holding it), or None if another shipper
    holds it. Retries for a second, past the short shared locks of `shipper_running`."""
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    for attempt in range(_LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if attempt + 1 < _LOCK_TRIES:
                time.sleep(0.05)
            continue
        return fd
    os.close(fd)
    return None


def lower_priority() -> str:
    """Run this process only when a CPU would otherwise idle (SCHED_IDLE); failing that, at
    the lowest nice level. Returns which it got."""
    with suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "idle"
    with suppress(OSError):
        os.nice(19)
    return "nice"


class Shipper:
    """Stores the spooled entries of every process writing into one folder."""

    def __init__(
        self,
        engine: Engine,
        folder: str | os.PathLike[str],
        *,
        interval: float = 0.1,
        sweep_interval: float = 1.0,
        idle_exit: float = 30.0,
    ):
        from policyd.services.decision_log import DecisionLog, Storer

        self.log = DecisionLog(engine, "spool", folder, interval=interval, storer=Storer.NONE)
        assert self.log.spool is not None, "the shipper needs a spool folder"
        self.folder = self.log.spool.folder
        self.interval = interval
        self.sweep_interval = sweep_interval
        self.idle_exit = idle_exit
        self._files: dict[str, tuple[int, int]] = {}  # live file name -> (fd, stored offset)
        self._lock_fd: int | None = None

    def acquire(self, lock_fd: int | None = None) -> bool:
        """Take the folder's shipper lock (or keep `lock_fd`, which holds it already); False
        if another shipper holds it."""
        self._lock_fd = take_lock(self.folder) if lock_fd is None else lock_fd
        return self._lock_fd is not None

    def run(self, stop: threading.Event) -> None:
        """Ship every `interval` seconds and sweep every `sweep_interval` seconds, until
        `stop` is set or the folder has held no spool file for `idle_exit` seconds."""
        from sqlalchemy.exc import OperationalError

        next_sweep = 0.0
        idle_since = time.monotonic()
        failing = False
        while not stop.is_set() and self.folder.is_dir():
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.sweep_interval
                    self.log.sweep()
                self.ship()
                failing = False
            except OperationalError:
                if not failing:  # once per outage, not every tick
                    log.warning("decision log shipper: the database is unavailable; retrying")
                failing = True
            except FileNotFoundError:
                pass  # a file removed meanwhile, or the folder: the loop's test tells which
            except Exception:
                if not failing:
                    log.exception("decision log shipper: storing failed; retrying")
                failing = True
            if self._files or any(self.folder.glob("*.jsonl")):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.idle_exit:
                return
            stop.wait(self.interval)

    def ship(self) -> int:
        """Store what live processes spooled up to now; the number of entries handled."""
        from policyd.services.decision_log import _stored_offset

        handled = 0
        live = {path.name for path in self.log.spool.others_live()}
        for name in list(self._files):
            if name not in live:  # released (the next sweep stores its rest) or gone
                os.close(self._files.pop(name)[0])
        for name in sorted(live):
            if name not in self._files:
                try:
                    fd = os.open(self.folder / name, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                with self.log.engine.connect() as connection:
                    self._files[name] = (fd, _stored_offset(connection, name) or 0)
            handled += self._ship_file(name)
        return handled

    def _ship_file(self, name: str) -> int:
        from policyd.store.spool import read_pending

        fd, offset = self._files[name]
        goal = os.fstat(fd).st_size  # what was written when this tick began
        handled = 0
        # A record still being written is not complete: the next tick takes it.
        while offset < goal and (batch := read_pending(fd, name, offset, goal, _READ)) is not None:
            offset, count = self.log._store(batch)
            self._files[name] = (fd, offset)
            handled += count
        return handled

    def close(self) -> None:
        for fd, _ in self._files.values():
            os.close(fd)
        self._files.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, type=Path, help="the spool folder")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between stores")
    parser.add_argument("--sweep-interval", type=float, default=1.0, help="seconds")
    parser.add_argument(
        "--idle-exit", type=float, default=30.0, help="exit after this long with no spool file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    url = Settings.from_env().database_url
    if not url:
        parser.error("POLICYD_DATABASE_URL is not set")
    # The lock first, at the priority this process started with: a shipper that holds it is
    # running for everyone who checks, even while it waits for an idle CPU to start up.
    args.folder.mkdir(parents=True, exist_ok=True)
    lock_fd = take_lock(args.folder.resolve())
    if lock_fd is None:
        return 0  # another shipper serves this folder
    priority = lower_priority()

    from policyd.store import Database

    database = Database(url)
    shipper = Shipper(
        database.engine,
        args.folder,
        interval=args.interval,
        sweep_interval=args.sweep_interval,
        idle_exit=args.idle_exit,
    )
    shipper.acquire(lock_fd)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log.info(
        "decision log shipper for %s started (pid %d, %s priority)",
        args.folder,
        os.getpid(),
        priority,
    )
    try:
        shipper.run(stop)
    finally:
        shipper.close()
        database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
