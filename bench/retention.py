"""Decision-log retention on PostgreSQL: a month of entries dropped as a partition vs deleted in
batches, a writer's insert latency meanwhile, and the time revision 0022 takes to copy them.

    python bench/retention.py                  # 1,000,000 entries in one month
    python bench/retention.py --rows 100000    # a quicker look

The entries are made by PostgreSQL itself (INSERT ... SELECT over generate_series), shaped like
bench/million.py's. A writer thread inserts one entry per transaction throughout (as a request's
decision is written); its latencies are reported for a quiet spell first, then during each way
of removing the month.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import text

from policyd.services.decision_log.retention import delete_in_batches, drop_months
from policyd.store import Database
from policyd.store.models import DecisionRecord
from policyd.store.partitions import Month, count_rows, create_month
from policyd.store.types import new_id
from throwaway import postgres_database

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MARCH = Month(datetime(2026, 3, 1, tzinfo=UTC))
CUTOFF = MARCH.end
INSERT = DecisionRecord.__table__.insert()


def load(database: Database, rows: int) -> float:
    """Insert `rows` unreferenced entries spread over March 2026; seconds taken."""
    began = time.perf_counter()
    with database.engine.begin() as connection:
        connection.execute(
            text(
                """INSERT INTO decisions (id, at, package, subject_id, outcome, rule, matched,
                reason, version, input, result, principal)
                SELECT lpad(to_hex(n), 12, '0') || '-' || substr(md5(n::text), 1, 23),
                       timestamptz '2026-03-01' + n * (interval '30 days' / :rows),
                       'pkg-' || lpad((n % 99000)::text, 6, '0'),
                       'u' || lpad((n % 200000)::text, 7, '0'), 'allow', 'eligible-members',
                       '["eligible-members"]', 'Eligible members are approved automatically',
                       'v1', json_build_object('subject', json_build_object('id', 'u' || n)),
                       '{"outcome": "allow", "rule": "eligible-members"}', 'bench'
                FROM generate_series(0, :rows - 1) n"""
            ),
            {"rows": rows},
        )
        connection.execute(text("ANALYZE decisions"))
    return time.perf_counter() - began


class Writer:
    """Inserts today's entries one transaction each and keeps each insert's latency."""

    def __init__(self, database: Database):
        self.database = database
        self.latencies: list[tuple[float, float]] = []  # (finished at, seconds)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.database.engine.connect() as connection:
            while not self.stop.is_set():
                row = {"id": new_id(), "at": datetime.now(UTC), "package": "p"}
                row.update(subject_id="u", outcome="allow", rule=None, matched=[], reason="")
                row.update(version="v1", input={}, result={}, principal="bench")
                began = time.perf_counter()
                with connection.begin():
                    connection.execute(INSERT, [row])
                ended = time.perf_counter()
                self.latencies.append((ended, ended - began))
                time.sleep(0.002)  # a steady stream, not a flood

    def between(self, began: float, ended: float) -> list[float]:
        return [seconds for at, seconds in self.latencies if began <= at <= ended]


def measure(writer: Writer, work: Callable[[], int]) -> tuple[float, int, list[float]]:
    began = time.perf_counter()
    removed = work()
    ended = time.perf_counter()
    return ended - began, removed, writer.between(began, ended)


def row(what: str, seconds: float, removed: int, latencies: list[float]) -> str:
    ms = sorted(value * 1e3 for value in latencies) or [0.0]
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{what:<34} {seconds:9.2f} {removed:>10,} {len(latencies):>8,}"
        f" {statistics.median(ms):8.1f} {p99:8.1f} {ms[-1]:8.1f}"
    )


def run(url: str, rows: int, batch: int) -> list[str]:
    database = Database(url)
    database.upgrade("0021")
    loaded = load(database, rows)
    began = time.perf_counter()
    database.upgrade()  # 0022: the copy into the partitioned table
    migrated = time.perf_counter() - began
    lines = [f"{'load into the plain table (0021)':<34} {loaded:9.2f} {rows:>10,}"]
    lines.append(f"{'upgrade to 0022 (copy, indexes)':<34} {migrated:9.2f} {rows:>10,}")
    writer = Writer(database)
    writer.thread.start()
    try:
        time.sleep(3.0)
        quiet = writer.between(time.perf_counter() - 3.0, time.perf_counter())
        lines.append(row("writer alone (3 s)", 3.0, 0, quiet))
        with database.session() as session:
            dropped = measure(writer, lambda: drop_months(session, CUTOFF)[0])
        lines.append(row("drop March's partition", *dropped))
        with database.engine.begin() as connection:
            create_month(connection, MARCH)
        load(database, rows)
        with database.engine.connect() as connection:  # what the drop's audit count costs
            counted = measure(writer, lambda: count_rows(connection, MARCH))
        lines.append(row("  count of the month's rows alone", *counted))
        with database.session() as session:
            deleted = measure(writer, lambda: delete_in_batches(session, CUTOFF, batch))
        lines.append(row(f"batched delete ({batch:,} a batch)", *deleted))
    finally:
        writer.stop.set()
        writer.thread.join()
        database.dispose()
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args(argv)
    with postgres_database(ADMIN_URL) as url:
        lines = run(url, args.rows, args.batch)
    print(f"PostgreSQL: one month of {args.rows:,} decision-log entries")
    print(
        f"{'step':<34} {'wall s':>9} {'entries':>10} {'inserts':>8}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
