"""The decision log's partitions on PostgreSQL: their names, and the DDL that adds or drops one.

`decisions` is LIST-partitioned on `kept`: `decisions_kept` holds the entries a request or an
assignment refers to, `decisions_log` the rest, RANGE-partitioned by month of `at`
(`decisions_log_y2026m12`), with `decisions_log_default` for an entry whose month has no
partition yet, so an insert never fails for want of one. See docs/storage.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection

PARENT = "decisions"
KEPT = "decisions_kept"
LOG = "decisions_log"
DEFAULT = "decisions_log_default"
_MONTH = re.compile(r"^decisions_log_y(\d{4})m(\d{2})$")


@dataclass(frozen=True, order=True)
class Month:
    """One month partition of `decisions_log`: entries with start <= at < end."""

    start: datetime

    @property
    def name(self) -> str:
        return f"{LOG}_y{self.start.year:04d}m{self.start.month:02d}"

    @property
    def end(self) -> datetime:
        return month_of(self.start + timedelta(days=32))

    def next(self) -> Month:
        return Month(self.end)


def month_of(at: datetime) -> datetime:
    """The first moment (UTC) of the month `at` falls in."""
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def is_partition(name: str) -> bool:
    """A table of the partitioned `decisions` (the models describe only the parent): schema
    comparisons leave these out."""
    return name.startswith(f"{PARENT}_")


def is_partitioned(connection: Connection) -> bool:
    """Whether `decisions` is the partitioned table (PostgreSQL after revision 0022)."""
    if connection.dialect.name != "postgresql":
        return False
    return bool(
        connection.scalar(
            text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(:name)"),
            {"name": PARENT},
        )
    )


def months(connection: Connection) -> list[Month]:
    """The month partitions of `decisions_log`, oldest first."""
    names = connection.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(:parent)"
        ),
        {"parent": LOG},
    )
    found = [_MONTH.match(name) for name in names]
    return sorted(
        Month(datetime(int(m[1]), int(m[2]), 1, tzinfo=UTC)) for m in found if m is not None
    )


def create_month(connection: Connection, month: Month) -> bool:
    """Add `month`'s partition unless it exists; False if it did.

    Entries of that month that went to the default partition meanwhile are moved into it
    first (PostgreSQL refuses a partition whose rows sit in the default one). The default
    partition is locked while that runs; it holds a few rows at most, as this runs ahead.
    """
    if connection.scalar(text("SELECT to_regclass(:name)"), {"name": month.name}) is not None:
        return False
    bounds = {"start": month.start, "end": month.end}
    strays = connection.scalar(
        text(f"SELECT count(*) FROM {DEFAULT} WHERE at >= :start AND at < :end"), bounds
    )
    if not strays:
        connection.execute(
            text(
                f"CREATE TABLE {month.name} PARTITION OF {LOG}"
                f" FOR VALUES FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
            )
        )
        return True
    connection.execute(text(f"LOCK TABLE {DEFAULT} IN ACCESS EXCLUSIVE MODE"))
    connection.execute(
        text(f"CREATE TABLE {month.name} (LIKE {LOG} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    )
    connection.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT} WHERE at >= :start AND at < :end"
            f" RETURNING *) INSERT INTO {month.name} SELECT * FROM moved"
        ),
        bounds,
    )
    connection.execute(
        text(
            f"ALTER TABLE {LOG} ATTACH PARTITION {month.name}"
            f" FOR VALUES FROM ('{month.start.isoformat()}') TO ('{month.end.isoformat()}')"
        )
    )
    return True


def drop_month(connection: Connection, month: Month, lock_timeout_ms: int) -> None:
    """Drop `month`'s partition and its rows. It waits at most `lock_timeout_ms` for the
    brief exclusive lock the drop takes on `decisions_log` (writers queue behind a waiting
    drop, so it must not wait long); past that PostgreSQL raises LockNotAvailable."""
    connection.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
    connection.execute(text(f"DROP TABLE {month.name}"))


def count_rows(connection: Connection, month: Month) -> int:
    return connection.scalar(text(f"SELECT count(*) FROM {month.name}")) or 0


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Alembic's name filter: the partitions are no tables of the models."""
    return not (type_ == "table" and name is not None and is_partition(name))


def include_object(obj: object, _name: str | None, type_: str, reflected: bool, other) -> bool:
    """Alembic's object filter: a model's foreign key to `decisions` that the database lacks
    is the partitioned table's (nothing can refer to it by id alone; the kept flag stands in)."""
    if type_ != "foreign_key_constraint" or reflected or other is not None:
        return True
    return getattr(obj, "referred_table", None) is None or obj.referred_table.name != PARENT
