"""Generated ids: time-ordered UUID version 7 text, never repeated across a fork."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from unittest import mock

from policyd.store.types import new_id


def test_ids_are_uuid7_text_carrying_their_millisecond():
    """Every id reads back as a version 7 UUID of the RFC's variant, prints as itself, and
    starts with the Unix time in milliseconds it was made at."""
    before = time.time_ns() // 1_000_000
    texts = [new_id() for _ in range(2000)]  # several pools' worth
    after = time.time_ns() // 1_000_000
    for text in texts:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
        assert before <= int.from_bytes(parsed.bytes[:6], "big") <= after


def test_ids_sort_by_time_and_keep_62_random_bits():
    """Ids made a millisecond apart sort in the order they were made (as text too), and the
    bits after the time are random: each of the 62 is set in about half of 4,000 ids."""
    earlier = new_id()
    time.sleep(0.002)
    assert earlier < new_id()
    ones: Counter[int] = Counter()
    for text in (new_id() for _ in range(4000)):
        value = uuid.UUID(text).int
        ones.update(bit for bit in range(62) if value >> bit & 1)  # rand_b (RFC 9562, 5.7)
    assert len(ones) == 62
    assert all(1700 < count < 2300 for count in ones.values()), ones.most_common(3)


def test_ids_made_one_after_another_sort_in_that_order():
    """Many ids in the same millisecond, and ids after the wall clock stepped back, still
    sort in the order they were made: the time bits grow by at least one each id."""
    drawn = [new_id() for _ in range(20_000)]
    assert drawn == sorted(drawn) and len(set(drawn)) == 20_000
    last = drawn[-1]
    with mock.patch("time.time_ns", return_value=time.time_ns() - 3_600_000_000_000):
        later = [new_id() for _ in range(3)]
    assert [last, *later] == sorted([last, *later])


def test_ids_from_many_threads_never_repeat():
    """Four threads drawing 5,000 ids each get 20,000 distinct ids, each thread's in order."""
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_id() for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({text for ids in drawn for text in ids}) == 20_000
    assert all(ids == sorted(ids) for ids in drawn)


def test_a_forked_child_does_not_repeat_its_parents_ids():
    """After a fork, parent and child draw different ids from what was pooled before it."""
    new_id()  # the pool now holds unused bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write, " ".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    parent = {new_id() for _ in range(10)}
    assert len(child) == 10 and not child & parent
