"""Column types used across the models: aware UTC datetimes and generated string ids."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator

from policyd.randomness import random_bytes


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Uuid7Clock:
    """The 60 time bits of version 7 ids, strictly increasing within the process.

    RFC 9562, section 6.2, method 3: the 48-bit Unix time in milliseconds, then 12 bits of the
    millisecond's fraction (units of 1/4096 ms) where the RFC would put random bits. Two ids
    drawn in the same unit, or after the wall clock stepped back, take the last value plus one,
    so ids made one after another in a process sort in that order (a keyset walk by id meets
    decisions in the order they were made). A forked child carries on from its parent's last
    value under a lock of its own.
    """

    def __init__(self) -> None:
        self._last = 0
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # one held by another thread at fork time stays held

    def next(self) -> int:
        now = time.time_ns() * 4096 // 1_000_000
        with self._lock:
            self._last = max(now, self._last + 1)
            return self._last


_clock = _Uuid7Clock()


def new_id() -> str:
    """A new id: UUID text (version 7, time-ordered, RFC 9562), 36 characters: the Unix time
    in milliseconds and its fraction (`_Uuid7Clock`), then 62 random bits
    (policyd.randomness).

    Ids that grow with time keep every primary-key index appending at its right edge: a batch
    of decision-log rows then dirties a few index pages instead of one page per row (random
    version 4 ids), which made each flush and each SQLite checkpoint costlier as the table grew.
    The random bits keep ids unguessable.
    """
    clock = f"{_clock.next() & 0xFFF_FFFF_FFFF_FFFF:015x}"
    random = random_bytes(8).hex()
    variant = "89ab"[int(random[0], 16) & 3]  # RFC 9562: 10xx
    return f"{clock[:8]}-{clock[8:12]}-7{clock[12:]}-{variant}{random[1:4]}-{random[4:16]}"
