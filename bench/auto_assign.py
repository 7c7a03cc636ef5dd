"""Auto-assignment at scale: a publish re-evaluates N users; the sweep adds, then removes.

    python bench/auto_assign.py                          # 1,000 and 10,000 users, SQLite
    python bench/auto_assign.py --sizes 10000 --postgres # and on a throwaway PostgreSQL database

Half the users are in Sales. A version whose package auto-assigns Sales is followed: every
user is queued (one INSERT ... SELECT), the preview counts what it would do, and the sweep
evaluates everyone with the rules engine in batches of 500 and auto-assigns half (requests,
decisions, assignments and grant jobs written; the grants are not run). Then a version whose
rule matches nobody (no grace) is followed and the sweep removes them all (revoke jobs queued,
reference counted). The table shows the seconds of each step, per size and database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

# This folder's http.py would shadow the standard library's `http` (see bench/expiry.py).
sys.path.sort(
    key=lambda entry: (
        os.path.realpath(entry or os.curdir) == os.path.dirname(os.path.realpath(__file__))
    )
)

from sqlalchemy import insert

from policyd.periodic import TaskContext
from policyd.rules import PolicyRuntime, load_texts
from policyd.services.auto_assign_preview import preview
from policyd.services.auto_assignment import sweep
from policyd.store import Database
from policyd.store.models import User
from throwaway import fresh_database

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CHUNK = 5_000
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def rules(department: str) -> str:
    return f"""apiVersion: policyd/v1
package:
  id: sales-crm
  displayName: Sales CRM
  resources:
    - {{connector: directory, resource: "group:CRM.Sales", role: member}}
  rules:
    - {{id: sales, then: {{decision: auto_approve, lifetime: {{duration: P30D}}}}}}
  autoAssign:
    when: {{subject.department: {department}, subject.type: member}}
"""


def log(message: str) -> None:
    print(f"[auto-assign] {message}", file=sys.stderr, flush=True)


def populate(db: Database, n: int) -> None:
    for first in range(0, n, CHUNK):
        rows = [
            {
                "id": f"u{i:07d}",
                "type": "member",
                "department": "Sales" if i % 2 else "Engineering",
                "attributes": {"costCenter": str(i % 97)},
            }
            for i in range(first, min(n, first + CHUNK))
        ]
        with db.engine.begin() as connection:
            connection.execute(insert(User.__table__), rows)


def timed(step) -> tuple[Any, float]:
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def measure(kind: str, n: int, server_url: str) -> dict[str, Any]:
    with fresh_database(kind, server_url, log) as url:
        db = Database(url)
        runtime = PolicyRuntime(load_texts({"crm.yaml": rules("Sales")}))
        try:
            db.upgrade()
            populate(db, n)
            with db.session() as session:
                counts, previewed = timed(
                    lambda: preview(session, runtime, runtime.active.bundle, now=NOW).to_dict()
                )
            context = TaskContext(sessions=db.session, runtime=runtime)
            added, add_s = timed(lambda: _drain(context))
            runtime.activate(load_texts({"crm.yaml": rules("Nobody")}))
            removed, remove_s = timed(lambda: _drain(context))
            return {
                "db": kind, "n": n, "preview": previewed, "would_add": counts["would_add"],
                "add": add_s, "added": added["added"], "remove": remove_s,
                "removed": removed["removed"],
            }  # fmt: skip
        finally:
            runtime.close()
            db.dispose()


def _drain(context: TaskContext) -> dict[str, int]:
    """Sweep passes until the queue is empty (a pass does at most 40 batches of 500)."""
    total: dict[str, int] = {"added": 0, "removed": 0}
    while True:
        counts = sweep(context, NOW)
        for key in total:
            total[key] += counts[key]
        if counts["taken"] == 0:
            return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="users in the directory")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.postgres else ["sqlite"]
    print(
        f"{'db':10} {'users':>7} {'preview s':>9} {'would add':>9} {'sweep s':>8} "
        f"{'added':>7} {'users/s':>8} {'unassign s':>10} {'removed':>7}"
    )
    for kind in kinds:
        for n in (int(size) for size in args.sizes.split(",")):
            row = measure(kind, n, args.postgres_url)
            print(
                f"{row['db']:10} {row['n']:>7,} {row['preview']:>9.2f} {row['would_add']:>9,} "
                f"{row['add']:>8.2f} {row['added']:>7,} {row['n'] / row['add']:>8,.0f} "
                f"{row['remove']:>10.2f} {row['removed']:>7,}",
                flush=True,
            )


if __name__ == "__main__":
    main()
