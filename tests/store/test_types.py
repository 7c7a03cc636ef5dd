"""Generated ids: UUID version 4 text from pooled randomness, never repeated across a fork."""

from __future__ import annotations

import os
import threading
import uuid

from policyd.store.types import new_id


def test_ids_are_uuid4_text():
    """Every id reads back as a version 4, RFC 4122 UUID and prints as itself."""
    for text in (new_id() for _ in range(2000)):  # several pools' worth
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_ids_from_many_threads_never_repeat():
    """Four threads drawing 5,000 ids each get 20,000 distinct ids."""
    drawn: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_id() for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({text for ids in drawn for text in ids}) == 20_000


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
