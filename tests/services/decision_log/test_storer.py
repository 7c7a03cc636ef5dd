"""The storer: a batch and its file's offset in one transaction, so each entry goes in once."""

from __future__ import annotations

from policyd.services.decision_log import REJECTED, Drainer
from policyd.store.spool import open_files
from tests.spool_support import line, spool, stored_subjects, subjects


def test_a_commit_whose_answer_was_lost_is_not_stored_again(store, folder, drainer):
    """If a batch committed but its drainer never heard, the retry finds the offset ahead of
    it and moves on instead of inserting the batch again."""
    writer = spool(folder, 0, 3)
    (file,) = open_files(folder)
    batch = file.read(0, file.size(), 1 << 20)
    file.close()
    assert drainer.storer.store(batch) == (batch.end, 3)  # committed; nobody noted it
    assert drainer.drain() == 0
    assert writer.path.exists() and len(stored_subjects(store.url)) == 3


def test_a_forgotten_offset_does_not_duplicate_entries(store, folder, drainer):
    """One drainer removed a file and forgot its offset while another still stored it: the
    second stores nothing twice (inserts that skip stored ids)."""
    writer = spool(folder, 0, 3)
    assert drainer.drain() == 3
    drainer.storer.forget(writer.path.name)
    assert Drainer(store.engine, folder).drain() == 3  # handled again, none inserted twice
    assert sorted(stored_subjects(store.url)) == subjects(0, 3)


def test_entries_the_database_refuses_are_kept_aside(store, folder, drainer):
    """A line that cannot be stored is kept in rejected.txt; the ones around it get in."""
    writer = spool(folder, 0, 1)
    writer.append(b"not a decision-log entry\n")
    writer.append(line(1))
    assert drainer.drain() == 3
    assert sorted(stored_subjects(store.url)) == subjects(0, 2)
    assert (folder / REJECTED).read_bytes() == b"not a decision-log entry\n"
    assert drainer.drain() == 0  # and it is never taken for a spool
