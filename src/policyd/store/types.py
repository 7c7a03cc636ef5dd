"""Column types used across the models: aware UTC datetimes and generated string ids."""

from __future__ import annotations

import os
import threading
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


class _RandomIds:
    """Random (version 4) UUID text, as str(uuid.uuid4()) gives, from pooled os.urandom bytes.

    uuid4 makes a system call per id, and that call releases the GIL: on the decision path the
    decision-log flusher thread then takes it over mid-request. One call per 256 ids instead.
    """

    _POOL = 16 * 256

    def __init__(self) -> None:
        self._reset()
        # A forked child must never hand out the ids its parent's pool still holds.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # one held by another thread at fork time stays held
        self._pool = b""
        self._used = 0

    def __call__(self) -> str:
        with self._lock:
            if self._used >= len(self._pool):
                self._pool, self._used = os.urandom(self._POOL), 0
            start = self._used
            self._used = start + 16
            text = self._pool[start : start + 16].hex()
        variant = "89ab"[int(text[16], 16) & 3]  # RFC 4122: 10xx
        return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{variant}{text[17:20]}-{text[20:]}"


_ids = _RandomIds()


def new_id() -> str:
    """A new random id: UUID text (version 4), 36 characters."""
    return _ids()
