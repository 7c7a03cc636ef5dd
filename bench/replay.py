"""Replay rate and memory: N stored decisions decided again under a candidate version.

    python bench/replay.py                        # 100,000 decisions on SQLite
    python bench/replay.py --n 1000000 [--database-url postgresql+psycopg://...]

Seeds the decision log with N decisions on the example policies (varied subjects), then
replays them under the examples with a deny rule added to the just-in-time package, through
the same service `policyd replay` uses, and prints one table: seconds, decisions per second,
how many flipped, and peak RSS before and after (bounded memory: the second must not grow
with N).
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policyd.domain import RequestOptions
from policyd.rules import Policy, load_bundle
from policyd.services.decisions import subject_from_view
from policyd.services.replay import ReplayReport, ReplayService
from policyd.store import Database
from policyd.store.models import DecisionRecord
from policyd.store.types import new_id

ROOT = Path(__file__).resolve().parent.parent
REQUEST = RequestOptions()
PACKAGES = ["scope-a-readers", "sales-support", "merger-collaboration", "quarter-end-close"]
DENY = """
    - id: no-contractors
      when: {subject.employeeType: contractor}
      then: {decision: deny, reason: Contractors do not read Scope A}
"""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed(database: Database, n: int, rng: random.Random) -> None:
    """N decisions as the examples decided them, so that the flips are the candidate's."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    examples = Policy(load_bundle(ROOT / "policies"))
    table = DecisionRecord.__table__
    with database.engine.begin() as connection:
        rows = []
        for i in range(n):
            subject = {
                "id": f"u{i % 50_000}",
                "email": f"u{i}@{rng.choice(['contoso.com', 'fabrikam.com'])}",
                "type": "guest" if rng.random() < 0.2 else "member",
                "groups": ["Group.ScopeA.Readers.Eligible"] if rng.random() < 0.3 else [],
                "manager": None,
                "organization": None,
                "packages": [],
                "department": rng.choice(["Finance", "Sales", None]),
                "jobTitle": None,
                "employeeType": rng.choice(["employee", "contractor", None]),
                "attributes": {},
            }
            at = start + timedelta(seconds=i)
            package = rng.choice(PACKAGES)
            decision = examples.decide(package, subject_from_view(subject), REQUEST, now=at)
            rows.append(
                {
                    "id": new_id(),
                    "at": at,
                    "package": package,
                    "subject_id": subject["id"],
                    "outcome": decision.outcome.value,
                    "rule": decision.rule,
                    "matched": [],
                    "reason": "",
                    "version": decision.version,
                    "input": {"subject": subject, "request": {}, "now": at.isoformat()},
                    "result": {},
                    "principal": "bench",
                }
            )
            if len(rows) == 10_000:
                connection.execute(table.insert(), rows)
                rows = []
        if rows:
            connection.execute(table.insert(), rows)
    examples.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="stored decisions (100000)")
    parser.add_argument("--database-url", help="an empty database (default: a SQLite file)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be positive")
    with tempfile.TemporaryDirectory(prefix="policyd-replay-") as work:
        url = args.database_url or f"sqlite:///{Path(work) / 'replay.db'}"
        database = Database(url)
        database.upgrade()
        began = time.perf_counter()
        seed(database, args.n, random.Random(7))
        seeded = time.perf_counter() - began
        folder = Path(work) / "candidate"
        shutil.copytree(ROOT / "policies", folder)
        jit = folder / "scope-a-readers.yaml"
        jit.write_text(jit.read_text() + DENY)
        policy = Policy(load_bundle(folder))
        before = rss_mb()
        report = ReplayReport("candidate")
        began = time.perf_counter()
        with database.session() as session:
            for _ in ReplayService(session).replay(policy, report):
                pass
        spent = time.perf_counter() - began
        after = rss_mb()
        policy.close()
        database.dispose()
    header = ("decisions", "seed s", "replay s", "decisions/s", "flipped", "RSS MB before/after")
    row = (
        f"{report.examined:,}",
        f"{seeded:.1f}",
        f"{spent:.1f}",
        f"{report.examined / spent:,.0f}",
        f"{report.changed:,}",
        f"{before:.0f} / {after:.0f}",
    )
    widths = [max(len(a), len(b)) for a, b in zip(header, row, strict=True)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
