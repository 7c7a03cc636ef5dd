"""Per-process append-only spool files: one unbuffered write per record, swept after a crash."""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

SUFFIX = ".jsonl"
DONE_SUFFIX = ".done"  # beside each spool file: how many of its bytes are in the database
_NAME = re.compile(r"\d+-[0-9a-f]+" + re.escape(SUFFIX))  # <pid>-<random>.jsonl; nothing else
_STALE_TMP_SECONDS = 60.0


class Pending(NamedTuple):
    """Complete records of spool file `name` from byte `start` up to byte `end`: storing them
    moves the file's stored offset from `start` to `end`."""

    name: str
    start: int
    end: int
    records: list[bytes]


class Spool:
    """This process's spool file in `folder`, exclusively locked (flock) while the process lives.

    `append` writes one newline-terminated record with a single unbuffered `os.write`: once it
    returns, the record is in the OS page cache and survives a crash of this process (not of the
    OS). The owner reads its records back with `pending` and marks them stored with `advance`.
    Files whose lock nobody holds belong to dead processes: `orphans` hands them to a sweeper.
    The file is created on the first append and again after a fork, so a gunicorn master that
    preloads the app never owns one its workers would share.

    With `handoff`, another process stores the records (the decision-log shipper): a file that
    has reached `rotate_bytes` is released at the next append and a new one started, `close`
    releases the file, and neither ever removes one. The process that stores a released
    file's last records removes it, so no file is removed while another process still reads it.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        rotate_bytes: int = 8 << 20,
        handoff: bool = False,
    ):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.handoff = handoff
        self._locked_pid = os.getpid()
        self._lock = threading.Lock()
        self._file: _OwnFile | None = None
        self._torn = False  # the last write failed midway: start the next one on a fresh line

    def _guard(self) -> threading.Lock:
        # A lock held by another thread at fork time would stay held forever in the child.
        if self._locked_pid != os.getpid():
            self._locked_pid, self._lock = os.getpid(), threading.Lock()
        return self._lock

    @property
    def path(self) -> Path | None:
        current = self._file
        return current.path if current is not None and current.pid == os.getpid() else None

    def append(self, record: bytes) -> None:
        """Write `record` (one line, ending in a newline) to this process's spool file.

        Raises:
            OSError: the write failed (disk full, ...); the record is not stored.
        """
        with self._guard():
            current = self._file
            if current is None or current.pid != os.getpid():
                current = None  # none yet, or the parent's (after a fork): start one
            elif self.handoff and current.size >= self.rotate_bytes:
                current.release()  # its reader stores the rest and removes it
                current = None
            if current is None:
                current = self._file = _OwnFile.create(self.folder)
                self._torn = False
            data = b"\n" + record if self._torn else record
            view = memoryview(data)
            self._torn = True
            while view:
                written = os.write(current.fd, view)
                current.size += written
                view = view[written:]
            self._torn = False

    def pending(self, limit: int = 4 << 20) -> tuple[int, list[bytes]]:
        """Complete records this process appended but has not yet `advance`d past.

        Returns:
            The offset to pass to `advance` once the records are stored, and the records.
        """
        batch = self.unstored(limit)
        return (batch.end, batch.records) if batch else (0, [])

    def written(self) -> tuple[str, int] | None:
        """The name of this process's current file and how many bytes are written to it."""
        with self._guard():
            current = self._file
            if current is None or current.pid != os.getpid():
                return None
            return current.path.name, current.size

    def unstored(self, limit: int = 4 << 20) -> Pending | None:
        """Like `pending`, with the file's name and the offset the records start at."""
        with self._guard():
            current = self._file
            if current is None or current.pid != os.getpid() or current.done >= current.size:
                return None
            start, size = current.done, current.size
        return read_pending(current.fd, current.path.name, start, size, limit)

    def advance(self, offset: int) -> str | None:
        """Records before `offset` are stored; a fully stored, large file is replaced.

        Returns:
            The name of the file if it was removed.
        """
        with self._guard():
            current = self._file
            if current is None or current.pid != os.getpid() or offset <= current.done:
                return None
            current.mark_done(offset)
            if not self.handoff and current.done >= current.size >= self.rotate_bytes:
                self._file = None  # the next append starts a new file
                current.remove()
                return current.path.name
            return None

    def orphans(self) -> Iterator[Orphan]:
        """Spool files of processes that died, each locked for the caller until it is closed."""
        now = time.time()
        for path in sorted(self.folder.iterdir()):
            if path.suffix == ".tmp":
                _remove_stale_tmp(path, now)
            if not _NAME.fullmatch(path.name) or path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # another sweeper finished it meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its owner is alive
                continue
            if os.fstat(fd).st_nlink == 0:
                os.close(fd)  # swept and removed while we waited to open it
                continue
            yield Orphan(path, fd)

    def others_live(self) -> Iterator[Path]:
        """Spool files in the folder that another live process owns (holds the lock of)."""
        for path in sorted(self.folder.iterdir()):
            if not _NAME.fullmatch(path.name) or path == self.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                yield path  # its owner holds the lock
            finally:
                os.close(fd)

    def close(self) -> str | None:
        """Release this process's file; removed if everything in it is stored (unless
        `handoff`), else left for a sweep.

        Returns:
            The name of the file if it was removed.
        """
        with self._guard():
            current, self._file = self._file, None
            if current is None or current.pid != os.getpid():
                return None
            if current.done >= current.size and not self.handoff:
                current.remove()
                return current.path.name
            current.release()
            return None


class _OwnFile:
    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd
        self.pid = os.getpid()
        self.size = 0
        self.done = 0
        self._done_fd: int | None = None
        self._fds = [fd]
        # A Spool dropped without close() still frees its lock, so a sweep can take over.
        self._finalizer = weakref.finalize(self, _close_fds, self._fds)

    @classmethod
    def create(cls, folder: Path) -> _OwnFile:
        # Locked under a temporary name, then renamed: a sweeper never sees an unlocked file
        # that a live process is about to use.
        name = f"{os.getpid()}-{secrets.token_hex(6)}"
        temporary = folder / f"{name}.tmp"
        fd = os.open(
            temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600
        )
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = folder / f"{name}{SUFFIX}"
        os.rename(temporary, path)
        return cls(path, fd)

    def mark_done(self, offset: int) -> None:
        self.done = offset
        if self._done_fd is None:
            self._done_fd = os.open(
                self.path.with_suffix(DONE_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
            self._fds.append(self._done_fd)
        os.pwrite(self._done_fd, b"%20d\n" % offset, 0)

    def remove(self) -> None:
        with suppress(FileNotFoundError):
            self.path.with_suffix(DONE_SUFFIX).unlink()
        with suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        self._finalizer()


class Orphan:
    """A dead process's spool file, locked by this process until `remove` or `release`."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd
        self._data: bytes | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def stored_bytes(self) -> int:
        """How much of the file its owner marked stored (`.done`), 0 if nothing."""
        return _stored_bytes(self.path)

    def records(self) -> list[bytes]:
        """Every complete record not yet marked stored; a torn last line is left out."""
        return _complete_lines(self._read()[self.stored_bytes() :])[1]

    def batch(self, start: int, count: int) -> Pending | None:
        """Up to `count` complete records from byte `start` (a record boundary) on; None
        when there is no complete record after `start`."""
        data = self._read()
        end = start
        records: list[bytes] = []
        while len(records) < count:
            newline = data.find(b"\n", end)
            if newline < 0:
                break  # a torn last line is no record
            if newline > end:
                records.append(data[end:newline])
            end = newline + 1
        return Pending(self.name, start, end, records) if end > start else None

    def _read(self) -> bytes:
        if self._data is None:
            with open(self.fd, "rb", closefd=False) as handle:
                handle.seek(0)
                self._data = handle.read()
        return self._data

    def remove(self) -> None:
        with suppress(FileNotFoundError):
            self.path.with_suffix(DONE_SUFFIX).unlink()
        with suppress(FileNotFoundError):
            self.path.unlink()
        self.release()

    def release(self) -> None:
        os.close(self.fd)


def read_pending(fd: int, name: str, start: int, size: int, limit: int) -> Pending | None:
    """The complete records of spool file `name` (open as `fd`) from byte `start` (a record
    boundary) up to byte `size`, reading at most `limit` bytes unless a single record is
    longer; None when no record is complete yet."""
    data = os.pread(fd, min(size - start, limit), start)
    if b"\n" not in data and start + len(data) < size:
        data = os.pread(fd, size - start, start)  # one record longer than `limit`
    end, records = _complete_lines(data)
    return Pending(name, start, start + end, records) if end else None


def _complete_lines(data: bytes) -> tuple[int, list[bytes]]:
    """The length of `data` up to its last newline, and the non-empty lines in that part."""
    end = data.rfind(b"\n") + 1
    return end, [line for line in data[:end].split(b"\n") if line]


def _stored_bytes(path: Path) -> int:
    try:
        return int(path.with_suffix(DONE_SUFFIX).read_bytes() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _remove_stale_tmp(path: Path, now: float) -> None:
    """A process that died between creating and renaming its file leaves an empty .tmp."""
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if now - os.fstat(fd).st_mtime > _STALE_TMP_SECONDS:
                path.unlink()
        finally:
            os.close(fd)


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with suppress(OSError):
            os.close(fd)
