"""The audit chain at scale: the cost of chaining bulk records, and `verify` over N records
in bounded memory (rate and peak RSS)."""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policyd.services.actor import SYSTEM
from policyd.services.audit import AuditService, audit_many
from policyd.store import Database
from throwaway import postgres_database

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BATCH = 2000  # records per transaction, as a mass expiry writes them


def records(start: int, count: int) -> list[dict]:
    """Audit records shaped like the worker's assignment.expired ones."""
    before = {
        "state": "active",
        "expires_at": "2026-01-05T09:00:00+00:00",
        "version": "3f2a9c1b7d0e",
    }
    return [
        {
            "action": "assignment.expired",
            "object": ("assignment", f"01a24b02-8f01-7b53-a5e2-{number:012d}"),
            "before": before,
            "after": {**before, "state": "expiring"},
            "version": "3f2a9c1b7d0e",
        }
        for number in range(start, start + count)
    ]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(url: str, n: int) -> None:
    database = Database(url)
    database.upgrade()
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    built = chained = 0.0
    written = 0
    while written < n:
        count = min(BATCH, n - written)
        rows = records(written, count)
        with database.session() as session:
            began = time.perf_counter()
            audit_many(session, SYSTEM, now + timedelta(seconds=written), rows)
            middle = time.perf_counter()
            session.commit()
            ended = time.perf_counter()
        built += middle - began
        chained += ended - middle
        written += count
    print(
        f"{database.engine.dialect.name:<10} wrote {n:,} records in {BATCH}-record transactions:"
        f" {chained:.1f} s at commit (chain + insert, {chained / n * 1e6:.1f} us/record)"
    )
    rss_before = peak_rss_mib()
    began = time.perf_counter()
    with database.session() as session:
        report = AuditService(session).verify()
    took = time.perf_counter() - began
    print(
        f"{database.engine.dialect.name:<10} verify: {report.records:,} records in {took:.1f} s"
        f" ({report.records / took:,.0f} records/s), intact={report.intact};"
        f" peak RSS {rss_before:.0f} MiB before, {peak_rss_mib():.0f} MiB after"
    )
    database.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--database-url", default=ADMIN_URL, help="PostgreSQL server URL")
    args = parser.parse_args(argv)
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            run(f"sqlite:///{Path(folder) / 'audit.db'}", args.n)
    if args.database in ("postgresql", "both"):
        with postgres_database(args.database_url) as url:
            run(url, args.n)


if __name__ == "__main__":
    main(sys.argv[1:])
