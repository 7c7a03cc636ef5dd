"""Per-process append-only spool files: one unbuffered write per record, read by drainers."""

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
    """This process's spool file in `folder`, exclusively locked (flock) while it writes to it.

    `append` writes one newline-terminated record with a single unbuffered `os.write`: once it
    returns, the record is in the OS page cache and survives a crash of this process (not of the
    OS). The writer never reads its file back and never removes it: drainers (`SpoolFile`) read
    every file of the folder, and remove a file once its writer released it and it is stored.
    A file that has reached `rotate_bytes` is released at the next append and a new one started;
    `close` releases the last one. The file is created on the first append and again after a
    fork, so a gunicorn master that preloads the app never owns one its workers would share.
    """

    def __init__(self, folder: str | os.PathLike[str], *, rotate_bytes: int = 8 << 20):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self._locked_pid = os.getpid()
        self._lock = threading.Lock()
        self._file: _OwnFile | None = None
        self._torn = False  # the last write failed midway: start the next one on a fresh line

    def _guard(self, pid: int | None = None) -> threading.Lock:
        # A lock held by another thread at fork time would stay held forever in the child.
        pid = os.getpid() if pid is None else pid
        if self._locked_pid != pid:
            self._locked_pid, self._lock = pid, threading.Lock()
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
        pid = os.getpid()  # a system call: once per append
        with self._guard(pid):
            current = self._file
            if current is None or current.pid != pid:
                current = None  # none yet, or the parent's (after a fork): start one
            elif current.size >= self.rotate_bytes:
                current.release()  # a drainer stores the rest and removes it
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

    def written(self) -> tuple[str, int] | None:
        """The name of this process's current file and how many bytes are written to it."""
        with self._guard():
            current = self._file
            if current is None or current.pid != os.getpid():
                return None
            return current.path.name, current.size

    def close(self) -> str | None:
        """Release this process's file (a drainer stores what is left and removes it).

        Returns:
            The name of the file released, if there was one.
        """
        with self._guard():
            current, self._file = self._file, None
            if current is None or current.pid != os.getpid():
                return None
            current.release()
            return current.path.name


class _OwnFile:
    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd
        self.pid = os.getpid()
        self.size = 0
        # A Spool dropped without close() still frees its lock, so a drainer can take over.
        self._finalizer = weakref.finalize(self, _close_fd, fd)

    @classmethod
    def create(cls, folder: Path) -> _OwnFile:
        # Locked under a temporary name, then renamed: a drainer never sees an unlocked file
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

    def release(self) -> None:
        self._finalizer()


class SpoolFile:
    """A spool file as a drainer opened it.

    `released` when its writer let it go (stopped, died, or rotated to a new file): this reader
    then holds the file's lock, so one drainer at a time finishes it and may `remove` it. A
    file still written to is read without a lock; drainers racing over it rely on the stored
    offsets in the database, never on the file, to store each record once.
    """

    def __init__(self, path: Path, fd: int, released: bool):
        self.path = path
        self.fd = fd
        self.released = released

    @property
    def name(self) -> str:
        return self.path.name

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read(self, start: int, end: int, limit: int) -> Pending | None:
        """The complete records from byte `start` (a record boundary) up to byte `end`."""
        return read_pending(self.fd, self.name, start, end, limit)

    def oldest(self, start: int) -> bytes | None:
        """The first complete record from byte `start` on, if any."""
        batch = read_pending(self.fd, self.name, start, self.size(), 64 << 10)
        return batch.records[0] if batch and batch.records else None

    def count(self, start: int, end: int, chunk: int = 1 << 20) -> int:
        """How many records end between byte `start` and byte `end`."""
        lines = 0
        while start < end:
            data = os.pread(self.fd, min(chunk, end - start), start)
            if not data:
                break
            lines += data.count(b"\n")
            start += len(data)
        return lines

    def remove(self) -> None:
        """Remove a released file (its records are stored, or torn beyond use)."""
        assert self.released, "only the drainer holding a released file removes it"
        with suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_files(folder: Path) -> Iterator[SpoolFile]:
    """Every spool file in `folder`, oldest name first, each closed by the caller.

    A file whose lock nobody holds is `released`, and locked for this caller alone. Empty
    temporary files of processes that died while creating theirs are removed on the way.
    """
    try:
        paths = sorted(folder.iterdir())
    except FileNotFoundError:
        return  # nothing was ever spooled here
    now = time.time()
    for path in paths:
        if path.suffix == ".tmp":
            _remove_stale_tmp(path, now)
        if not _NAME.fullmatch(path.name):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another drainer removed it meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield SpoolFile(path, fd, released=False)  # its writer (or another drainer) has it
            continue
        if os.fstat(fd).st_nlink == 0:
            os.close(fd)  # drained and removed while we opened it
            continue
        yield SpoolFile(path, fd, released=True)


def peek_files(folder: Path) -> Iterator[SpoolFile]:
    """Every spool file in `folder`, opened to be read without taking any lock (to measure
    what waits; drainers use `open_files`)."""
    try:
        paths = sorted(folder.iterdir())
    except FileNotFoundError:
        return
    for path in paths:
        if _NAME.fullmatch(path.name):
            with suppress(FileNotFoundError):
                yield SpoolFile(path, os.open(path, os.O_RDONLY | os.O_CLOEXEC), released=False)


def read_pending(fd: int, name: str, start: int, size: int, limit: int) -> Pending | None:
    """The complete records of spool file `name` (open as `fd`) from byte `start` (a record
    boundary) up to byte `size`, reading at most `limit` bytes unless a single record is
    longer; None when no record is complete yet."""
    if size <= start:
        return None
    data = os.pread(fd, min(size - start, limit), start)
    if b"\n" not in data:  # a record longer than `limit`, or one still being written
        while b"\n" not in data and start + len(data) < size:
            more = min(size - start - len(data), max(limit, 64 << 10))
            data += os.pread(fd, more, start + len(data))
        data = data[: data.find(b"\n") + 1]  # that one record
    end, records = _complete_lines(data)
    return Pending(name, start, start + end, records) if end else None


def _complete_lines(data: bytes) -> tuple[int, list[bytes]]:
    """The length of `data` up to its last newline, and the non-empty lines in that part."""
    end = data.rfind(b"\n") + 1
    return end, [line for line in data[:end].split(b"\n") if line]


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


def _close_fd(fd: int) -> None:
    with suppress(OSError):
        os.close(fd)
