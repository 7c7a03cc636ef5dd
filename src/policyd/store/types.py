"""Column types used across the models: aware UTC datetimes and generated string ids."""

from __future__ import annotations

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


def new_id() -> str:
    """A new id: UUID text (version 7, time-ordered, RFC 9562), 36 characters: the Unix time
    in milliseconds, then 74 random bits (policyd.randomness).

    Ids that grow with time keep every primary-key index appending at its right edge: a batch
    of decision-log rows then dirties a few index pages instead of one page per row (random
    version 4 ids), which made each flush and each SQLite checkpoint costlier as the table grew.
    The random bits keep ids unguessable.
    """
    millis = time.time_ns() // 1_000_000
    random = random_bytes(10).hex()
    clock = f"{millis & 0xFFFF_FFFF_FFFF:012x}"
    variant = "89ab"[int(random[3], 16) & 3]  # RFC 9562: 10xx
    return f"{clock[:8]}-{clock[8:]}-7{random[:3]}-{variant}{random[4:7]}-{random[7:19]}"
