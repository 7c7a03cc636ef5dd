"""Spool files: one write per record, read by drainers, released when their writer lets go."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from policyd.store.spool import SUFFIX, Spool, SpoolFile, open_files


def spool_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SUFFIX}"))


def opened(folder: Path) -> list[SpoolFile]:
    return list(open_files(folder))


def close_all(files: list[SpoolFile]) -> None:
    for each in files:
        each.close()


def records(file: SpoolFile) -> list[bytes]:
    batch = file.read(0, file.size(), 1 << 20)
    return batch.records if batch else []


def test_no_file_until_the_first_record(tmp_path):
    """A process that never appends (a preloading gunicorn master) owns no spool file."""
    spool = Spool(tmp_path)
    assert spool.path is None and spool_files(tmp_path) == []
    spool.append(b"one\n")
    assert spool_files(tmp_path) == [spool.path]


def test_a_live_writers_file_is_read_but_not_released(tmp_path):
    """A drainer reads a file still written to, and may never remove it."""
    spool = Spool(tmp_path)
    spool.append(b"one\n")
    spool.append(b"two\n")
    (file,) = files = opened(tmp_path)
    assert not file.released and records(file) == [b"one", b"two"]
    with pytest.raises(AssertionError):
        file.remove()
    close_all(files)


def test_a_closed_writers_file_is_released_to_one_drainer_at_a_time(tmp_path):
    """After close() the file is released; the drainer that opened it first holds its lock."""
    spool = Spool(tmp_path)
    spool.append(b"mine\n")
    assert spool.close() == spool_files(tmp_path)[0].name
    (first,) = opened(tmp_path)
    (second,) = theirs = opened(tmp_path)
    assert first.released and not second.released
    close_all(theirs)
    first.remove()
    assert spool_files(tmp_path) == []


def test_a_dead_writers_file_is_released(tmp_path):
    """When the writer dies without a word, its lock goes with it."""
    script = (
        "import os, sys\n"
        "from policyd.store.spool import Spool\n"
        f"spool = Spool({str(tmp_path)!r})\n"
        "spool.append(b'first\\n')\n"
        "spool.append(b'second\\n')\n"
        "os._exit(0)  # no clean-up, like a crash\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    (file,) = files = opened(tmp_path)
    assert file.released and records(file) == [b"first", b"second"]
    close_all(files)


def test_only_spool_files_are_read(tmp_path):
    """Other files in the folder (rejected entries, notes) are never taken for a spool."""
    (tmp_path / "rejected.txt").write_bytes(b"kept\n")
    (tmp_path / f"notes{SUFFIX}").write_bytes(b"mine\n")
    assert opened(tmp_path) == []


def test_a_missing_folder_holds_no_files(tmp_path):
    """A drainer of a folder nothing was ever spooled to finds nothing (and creates nothing)."""
    assert opened(tmp_path / "nowhere") == [] and not (tmp_path / "nowhere").exists()


def test_a_torn_last_record_is_left_out(tmp_path):
    """A write cut short by a crash (no newline yet) is not a record."""
    (tmp_path / f"1-dead{SUFFIX}").write_bytes(b"whole\nhalf a rec")
    (file,) = files = opened(tmp_path)
    assert records(file) == [b"whole"]
    close_all(files)


def test_a_full_file_is_released_at_the_next_append(tmp_path):
    """Past `rotate_bytes` the writer starts a new file and lets a drainer finish the old one."""
    spool = Spool(tmp_path, rotate_bytes=10)
    spool.append(b"0123456789\n")
    first = spool.path
    spool.append(b"next\n")
    assert spool.path not in (None, first)
    files = opened(tmp_path)
    assert {(f.path, f.released) for f in files} == {(first, True), (spool.path, False)}
    close_all(files)


def test_a_failed_write_does_not_swallow_the_next_record(tmp_path, monkeypatch):
    """After a write broke off midway (disk full), the next record starts on a fresh line."""
    spool = Spool(tmp_path)
    spool.append(b"before\n")
    real_write, calls = os.write, []

    def write_three_bytes_then_fail(fd, data):
        calls.append(fd)
        if len(calls) == 1:
            return real_write(fd, bytes(data[:3]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", write_three_bytes_then_fail)
    with pytest.raises(OSError):
        spool.append(b"lost\n")
    monkeypatch.undo()
    spool.append(b"after\n")
    (file,) = files = opened(tmp_path)
    assert records(file) == [b"before", b"los", b"after"]
    close_all(files)


def test_a_forked_child_writes_a_file_of_its_own(tmp_path):
    """After fork (gunicorn --preload) the child never appends to its parent's file."""
    script = (
        "import os\n"
        "from policyd.store.spool import Spool\n"
        f"spool = Spool({str(tmp_path)!r})\n"
        "spool.append(b'parent\\n')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    spool.append(b'child\\n')\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0\n"
        "print(spool.path)\n"
    )
    # A fresh process: forking pytest itself, with other tests' threads about, is not safe.
    result = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    )
    parent_file = Path(result.stdout.strip())
    files = spool_files(tmp_path)
    assert len(files) == 2 and parent_file in files
    assert parent_file.read_bytes() == b"parent\n"
    child_file = next(path for path in files if path != parent_file)
    with open(child_file, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the child is gone: unlocked
        assert handle.read() == b"child\n"
