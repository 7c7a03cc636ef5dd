"""Column types used across the models: aware UTC datetimes and generated string ids."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


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


class _TimeOrderedIds:
    """Version 7 UUID text (RFC 9562): the Unix time in milliseconds, then 74 random bits from
    pooled os.urandom bytes.

    Ids that grow with time keep every primary-key index appending at its right edge: a batch
    of decision-log rows then dirties a few index pages instead of one page per row (random
    version 4 ids), which made each flush and each SQLite checkpoint costlier as the table grew.
    The random bits keep ids unguessable. os.urandom is called once per 409 ids: each call
    releases the GIL, and on the decision path the flusher thread would then take it over
    mid-request.
    """

    _POOL = 10 * 409

    def __init__(self) -> None:
        self._reset()
        # A forked child must never hand out the ids its parent's pool still holds.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # one held by another thread at fork time stays held
        self._pool = b""
        self._used = 0

    def __call__(self) -> str:
        millis = time.time_ns() // 1_000_000
        with self._lock:
            if self._used >= len(self._pool):
                self._pool, self._used = os.urandom(self._POOL), 0
            start = self._used
            self._used = start + 10
            random = self._pool[start : start + 10].hex()
        clock = f"{millis & 0xFFFF_FFFF_FFFF:012x}"
        variant = "89ab"[int(random[3], 16) & 3]  # RFC 9562: 10xx
        return f"{clock[:8]}-{clock[8:]}-7{random[:3]}-{variant}{random[4:7]}-{random[7:19]}"


_ids = _TimeOrderedIds()


def new_id() -> str:
    """A new id: UUID text (version 7, time-ordered), 36 characters."""
    return _ids()
