"""The drainer: every file of a spool folder stored once, released files removed, lag known."""

from __future__ import annotations

import threading
from datetime import timedelta

from policyd.services.decision_log import SLICE_PAUSE, Drainer, storer
from policyd.store.spool import SUFFIX, Spool, open_files
from tests.spool_support import (
    AT,
    line,
    progress_rows,
    spool,
    spool_dead,
    stored_subjects,
    subjects,
)


def test_a_pass_stores_every_file_of_the_folder_once(store, folder, drainer):
    """Two live writers and a dead one: one pass stores all, the next finds nothing new."""
    spool(folder, 0, 3)
    spool(folder, 3, 2)
    spool_dead(folder, 5, 4)
    assert drainer.drain() == 9
    assert drainer.drain() == 0
    assert sorted(stored_subjects(store.url)) == subjects(0, 9)


def test_a_live_file_is_kept_and_a_released_one_removed_with_its_offset(store, folder, drainer):
    """Only a file its writer let go is removed, once stored, and its offset row with it."""
    live, closed = spool(folder, 0, 2), spool(folder, 2, 2)
    released = closed.close()
    assert drainer.drain() == 4
    assert [path.name for path in folder.glob(f"*{SUFFIX}")] == [live.path.name]
    assert progress_rows(store.url) == [live.path.name]
    assert released not in progress_rows(store.url)


def test_entries_appended_after_a_pass_go_in_with_the_next(store, folder, drainer):
    """A drainer resumes a live file where it stopped."""
    writer = spool(folder, 0, 2)
    assert drainer.drain() == 2
    writer.append(line(2))
    assert drainer.drain() == 1
    assert sorted(stored_subjects(store.url)) == subjects(0, 3)


def test_drainers_share_the_offsets_so_nothing_is_stored_twice(store, folder, drainer):
    """What one drainer stored, another (a read catching up, a sidecar) skips."""
    writer = spool(folder, 0, 2)
    other = Drainer(store.engine, folder)
    assert other.drain() == 2
    writer.append(line(2))
    assert drainer.drain() == 1
    assert other.drain() == 0
    assert sorted(stored_subjects(store.url)) == subjects(0, 3)


def test_a_limited_pass_stops_early_and_the_next_goes_on(store, folder, drainer):
    """A read catching up stores about `limit` bytes, not a whole backlog."""
    spool(folder, 0, 200)
    first = drainer.drain(limit=len(line(0)) * 50)
    assert 0 < first < 200
    assert first + drainer.drain() == 200


def test_lag_says_what_waits_and_since_when(store, folder, drainer):
    """Bytes and entries not stored, and the age of the oldest, from the entries' own time."""
    writer = Spool(folder)
    for number, minutes in ((0, 5), (1, 3)):
        writer.append(line(number, AT - timedelta(minutes=minutes)))
    lag = drainer.lag()
    assert (lag.files, lag.entries, lag.estimated) == (1, 2, False)
    assert lag.bytes == writer.written()[1] and lag.seconds(AT) == 300
    drainer.drain()
    after = drainer.lag()
    assert (after.bytes, after.entries, after.oldest_at, after.seconds(AT)) == (0, 0, None, 0)


def test_a_folder_nothing_was_spooled_to_has_no_lag(store, tmp_path):
    """A worker on a host without API servers drains an empty (or missing) folder."""
    drainer = Drainer(store.engine, tmp_path / "never")
    assert drainer.drain() == 0 and drainer.lag().bytes == 0


def test_draining_one_file_leaves_the_others_unlocked(store, folder, drainer):
    """A process that stops drains its own file only; another released file stays free for
    the next drainer to finish and remove (its lock is not kept)."""
    other, own = spool(folder, 0, 2), spool(folder, 2, 3)
    other_name, own_name = other.close(), own.close()
    assert drainer.drain(only=own_name) == 3
    assert [path.name for path in folder.glob(f"*{SUFFIX}")] == [other_name]
    (file,) = open_files(folder)
    assert file.released
    file.close()
    assert Drainer(store.engine, folder).drain() == 2 and not list(folder.glob(f"*{SUFFIX}"))


def test_lag_estimates_the_entries_of_a_large_backlog(store, folder, drainer):
    """Past the bytes it counts (64 MiB by default), the lag scales the count it has."""
    spool(folder, 0, 1000)
    lag = drainer.lag(count=len(line(500)) * 100)
    assert lag.estimated and 900 <= lag.entries <= 1100
    assert not drainer.lag().estimated and drainer.lag().entries == 1000


def test_a_resting_pass_rests_between_slices_and_stores_the_same(
    store, folder, drainer, monkeypatch
):
    """With `pause`, a pass rests between the slices of 32 entries it inserts (SQLite's
    INSERTs, PostgreSQL's COPY), and stores every entry once; a pass without it, as a read
    catching up makes, never rests. The drainer beside the servers rests."""
    rests: list[float] = []
    monkeypatch.setattr(storer.time, "sleep", rests.append)
    spool(folder, 0, 100)
    assert drainer.drain(pause=0.25) == 100
    assert rests == [0.25] * 3  # slices of 32, 32, 32 and 4
    spool(folder, 100, 40)
    rests.clear()
    assert drainer.drain() == 40 and rests == []
    assert sorted(stored_subjects(store.url)) == subjects(0, 140)
    stop = threading.Event()
    spool(folder, 140, 33)
    monkeypatch.setattr(drainer, "drain", _once(drainer.drain, stop))
    drainer.run(stop, interval=60)
    assert rests == [SLICE_PAUSE]
    assert sorted(stored_subjects(store.url)) == subjects(0, 173)


def _once(drain, stop: threading.Event):
    """`drain`, which sets `stop` after its first pass (so `run` makes exactly one)."""

    def drain_once(**options):
        try:
            return drain(**options)
        finally:
            stop.set()

    return drain_once
