"""In-process cost of draining the decision log: CPU per stored entry, client and database."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from policyd.services.decision_log import Drainer, encode
from policyd.store import Database
from policyd.store.spool import Spool
from policyd.store.types import new_id
from throwaway import postgres_database

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TICKS = os.sysconf("SC_CLK_TCK")


def entry(now: datetime) -> dict:
    """A decision-log row shaped like a bench/http.py decision (about 1 KB spooled)."""
    subject = {
        "id": "alice",
        "email": "alice@contoso.com",
        "department": "Engineering",
        "type": "member",
        "groups": ["Group.ScopeA.Readers.Eligible"],
    }
    result = {
        "decision": "allow",
        "package": "scope-a-readers",
        "rule": "engineering-readers",
        "reason": "Engineering members may read scope A",
        "matched": ["engineering-readers"],
        "lifetime": "PT8H",
        "version": "3f2a9c1b7d0e",
        "stages": [],
    }
    return {
        "id": new_id(),
        "at": now,
        "package": "scope-a-readers",
        "subject_id": "alice",
        "outcome": "allow",
        "rule": "engineering-readers",
        "matched": ["engineering-readers"],
        "reason": "Engineering members may read scope A",
        "version": "3f2a9c1b7d0e",
        "input": {"subject": subject, "request": {"justification": None}, "now": now.isoformat()},
        "result": result,
        "principal": "bench-admin",
    }


def postgres_cpu() -> float:
    """CPU seconds used so far by every process named postgres on this host."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name == "postgres" or name.startswith("postgres:"):
            fields = stat[stat.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(url: str, rows: int, rounds: int) -> list[tuple[float, float, float]]:
    database = Database(url)
    database.upgrade()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        spool, drainer = Spool(folder), Drainer(database.engine, folder)
        allow_nan = not url.startswith("postgresql")
        now = datetime.now(UTC)
        drainer.drain()  # warm up: connect, prepare
        for _ in range(rounds):
            for _ in range(rows):
                spool.append(encode(entry(now), allow_nan=allow_nan, strict=True))
            wall, cpu, server = time.perf_counter(), own_cpu(), postgres_cpu()
            stored = drainer.drain()
            wall, cpu = time.perf_counter() - wall, own_cpu() - cpu
            server = postgres_cpu() - server
            assert stored == rows, stored
            results.append((wall, cpu, server))
        spool.close()
        drainer.drain()
    database.dispose()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.database == "sqlite":
            results = run(f"sqlite:///{tmp}/bench.db", args.rows, args.rounds)
        else:
            with postgres_database(ADMIN_URL) as url:
                results = run(url, args.rows, args.rounds)
    print(f"{args.database}: a drain of {args.rows} spooled entries, {args.rounds} rounds")
    print("round    wall ms  client CPU us/row  database CPU us/row")
    rounds = list(enumerate(results, 1)) if len(results) <= 10 else []
    rounds.append(("all", tuple(map(sum, zip(*results, strict=True)))))
    per_row = 1e6 / args.rows
    for number, (wall, cpu, server) in rounds:
        scale = 1 if number != "all" else len(results)
        print(
            f"{number:>5}  {wall * 1e3:9.1f}  {cpu * per_row / scale:17.1f}"
            f"  {server * per_row / scale:19.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
