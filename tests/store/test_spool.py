"""Spool files: one write per record, read back by their owner, swept after their owner died."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from policyd.store.spool import DONE_SUFFIX, SUFFIX, Spool


def spool_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{SUFFIX}"))


def test_no_file_until_the_first_record(tmp_path):
    """A process that never appends (a preloading gunicorn master) owns no spool file."""
    spool = Spool(tmp_path)
    assert spool.path is None and spool_files(tmp_path) == []
    spool.append(b"one\n")
    assert spool_files(tmp_path) == [spool.path]


def test_the_owner_reads_back_what_it_has_not_stored(tmp_path):
    """`pending` returns whole records after the last `advance`, and nothing once all are in."""
    spool = Spool(tmp_path)
    for record in (b"one\n", b"two\n"):
        spool.append(record)
    offset, records = spool.pending()
    assert records == [b"one", b"two"]
    spool.append(b"three\n")
    spool.advance(offset)
    offset, records = spool.pending()
    assert records == [b"three"]
    spool.advance(offset)
    assert spool.pending() == (0, [])


def test_a_live_owners_file_is_never_an_orphan(tmp_path):
    """Another spool on the same folder (another process, or app) leaves a locked file alone."""
    owner, sweeper = Spool(tmp_path), Spool(tmp_path)
    owner.append(b"mine\n")
    assert list(sweeper.orphans()) == []


def test_a_dead_owners_records_are_swept_once(tmp_path):
    """When the owner's lock is gone its complete records go to one sweeper, then the file."""
    script = (
        "import os, sys\n"
        "from policyd.store.spool import Spool\n"
        f"spool = Spool({str(tmp_path)!r})\n"
        "spool.append(b'first\\n')\n"
        "spool.append(b'second\\n')\n"
        "os._exit(0)  # no clean-up, like a crash\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    sweeper = Spool(tmp_path)
    (orphan,) = sweeper.orphans()
    assert orphan.records() == [b"first", b"second"]
    assert list(Spool(tmp_path).orphans()) == []  # locked by the sweeper meanwhile
    orphan.remove()
    assert spool_files(tmp_path) == [] and list(sweeper.orphans()) == []


def test_only_spool_files_are_swept(tmp_path):
    """Other files in the folder (rejected entries, notes) are never taken for a spool."""
    (tmp_path / "rejected.txt").write_bytes(b"kept\n")
    (tmp_path / f"notes{SUFFIX}").write_bytes(b"mine\n")
    assert list(Spool(tmp_path).orphans()) == []


def test_a_torn_last_record_is_left_out(tmp_path):
    """A write cut short by a crash (no newline yet) is not a record."""
    (tmp_path / f"1-dead{SUFFIX}").write_bytes(b"whole\nhalf a rec")
    (orphan,) = Spool(tmp_path).orphans()
    assert orphan.records() == [b"whole"]
    orphan.release()


def test_a_sweep_skips_what_the_dead_owner_had_stored(tmp_path):
    """The `.done` offset beside a file says how much of it is already in the database."""
    spool = Spool(tmp_path)
    spool.append(b"stored\n")
    spool.append(b"not yet\n")
    spool.advance(len(b"stored\n"))
    path = spool.path
    assert path is not None and path.with_suffix(DONE_SUFFIX).exists()
    del spool  # dropped without close(): its lock goes with it
    (orphan,) = Spool(tmp_path).orphans()
    assert orphan.path == path and orphan.records() == [b"not yet"]
    orphan.release()


def test_a_fully_stored_large_file_is_replaced(tmp_path):
    """Past `rotate_bytes`, a file whose records are all stored makes way for a new one."""
    spool = Spool(tmp_path, rotate_bytes=10)
    spool.append(b"0123456789\n")
    first = spool.path
    offset, _ = spool.pending()
    spool.advance(offset)
    assert spool_files(tmp_path) == []
    spool.append(b"next\n")
    assert spool.path not in (None, first) and spool.pending()[1] == [b"next"]


def test_close_removes_a_stored_file_and_keeps_an_unstored_one(tmp_path):
    """A clean shutdown leaves a file behind only when some of it is not yet stored."""
    stored, unstored = Spool(tmp_path), Spool(tmp_path)
    stored.append(b"a\n")
    stored.advance(stored.pending()[0])
    unstored.append(b"b\n")
    kept = unstored.path
    stored.close()
    unstored.close()
    assert spool_files(tmp_path) == [kept]
    (orphan,) = Spool(tmp_path).orphans()
    assert orphan.records() == [b"b"]
    orphan.release()


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
    assert spool.pending()[1] == [b"before", b"los", b"after"]


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
        "    os._exit(0 if spool.pending()[1] == [b'child'] else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0\n"
        "assert spool.pending()[1] == [b'parent']\n"
        "print(spool.path)\n"
    )
    # A fresh process: forking pytest itself, with other tests' threads about, is not safe.
    result = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    )
    parent_file = Path(result.stdout.strip())
    files = spool_files(tmp_path)
    assert len(files) == 2 and parent_file in files
    child_file = next(path for path in files if path != parent_file)
    with open(child_file, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the child is gone: unlocked
        assert handle.read() == b"child\n"
