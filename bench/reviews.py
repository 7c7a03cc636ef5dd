"""Access reviews at scale: a campaign over N assignments opens, closes and its removals run.

    python bench/reviews.py                          # 1,000 and 10,000 assignments, SQLite
    python bench/reviews.py --sizes 10000 --postgres # and on a throwaway PostgreSQL database

Each holder has a manager (one per 50 holders) and a `lastSignIn`; every other one signed in
more than 90 days ago, so the recommendation (made by the rules engine) is `remove` for half.
Nobody answers and the review takes the recommendation: closing removes half the access
through the revoke outbox (reference counted), and the directory connector runs those
revokes. Targets (issue 13): 10,000 assignments open and apply in a bounded time; the table
shows the seconds of each step, per size and database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

# This folder's http.py would shadow the standard library's `http` (see bench/expiry.py).
sys.path.sort(
    key=lambda entry: (
        os.path.realpath(entry or os.curdir) == os.path.dirname(os.path.realpath(__file__))
    )
)

from sqlalchemy import func, insert, select

from policyd.connectors.config import Connectors, load_instances
from policyd.rules import PolicyRuntime, load_texts
from policyd.services.actor import SYSTEM
from policyd.services.memberships import DirectoryMemberships
from policyd.services.reviews import ReviewService
from policyd.services.versions import VersionService
from policyd.store import Database
from policyd.store.models import (
    AccessRequest,
    Assignment,
    DecisionRecord,
    Group,
    Job,
    Membership,
    ReviewItem,
    User,
)
from policyd.worker import Worker
from throwaway import fresh_database

OPENED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # four days into the quarterly campaign
ENDED = datetime(2026, 1, 15, 0, 1, tzinfo=UTC)
GROUP = "Bench.Reviewed"
PACKAGE = "reviewed"
CHUNK = 5_000
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RULES = f"""apiVersion: policyd/v1
package:
  id: {PACKAGE}
  displayName: Reviewed
  owners: ["user:owner"]
  lifetime: {{permanent: true}}
  resources:
    - {{connector: directory, resource: "group:{GROUP}", role: member}}
  rules:
    - {{id: everyone, then: {{decision: auto_approve}}}}
  reviews:
    - id: quarterly
      schedule: {{cron: "0 0 1 1,4,7,10 *"}}
      duration: P14D
      reviewers: [manager]
      fallback: [owners]
      onNoResponse: recommendation
      recommendations:
        - id: no-sign-in-for-90-days
          when: {{subject.attributes.daysSinceSignIn: {{gt: 90}}}}
          recommend: remove
"""


def log(message: str) -> None:
    print(f"[reviews] {message}", file=sys.stderr, flush=True)


def populate(db: Database, n: int, version: str) -> None:
    """N holders of the package, each granted through a done grant job, and their managers."""
    granted = OPENED - timedelta(days=30)
    with db.engine.begin() as connection:
        connection.execute(insert(Group.__table__), [{"id": GROUP, "display_name": GROUP}])
        managers = [{"id": f"m{i}", "type": "member", "attributes": {}} for i in range(n // 50 + 1)]
        connection.execute(insert(User.__table__), managers)
    for first in range(0, n, CHUNK):
        rows: dict[Any, list[dict[str, Any]]] = {
            m: [] for m in (User, DecisionRecord, AccessRequest, Assignment, Job, Membership)
        }
        for i in range(first, min(n, first + CHUNK)):
            user = f"u{i:07d}"
            signed_in = OPENED - timedelta(days=200 if i % 2 else 3)
            decision, request, assignment = (str(uuid.uuid4()) for _ in range(3))
            rows[User].append(
                {
                    "id": user,
                    "type": "member",
                    "manager_id": f"m{i // 50}",
                    "attributes": {"lastSignIn": signed_in.isoformat()},
                }
            )
            rows[DecisionRecord].append(
                {
                    "id": decision, "at": granted, "package": PACKAGE, "subject_id": user,
                    "outcome": "auto_approve", "rule": "everyone", "matched": ["everyone"],
                    "reason": "bench", "version": version, "input": {}, "result": {},
                    "principal": user,
                }
            )  # fmt: skip
            rows[AccessRequest].append(
                {
                    "id": request, "package": PACKAGE, "subject_id": user, "principal": user,
                    "state": "delivered", "stages": [], "decision_id": decision,
                    "version": version, "rule": "everyone", "reason": "bench",
                    "created_at": granted, "updated_at": granted,
                }
            )  # fmt: skip
            rows[Assignment].append(
                {
                    "id": assignment, "subject_id": user, "package": PACKAGE, "state": "active",
                    "request_id": request, "decision_id": decision, "version": version,
                    "rule": "everyone", "starts_at": granted, "expires_at": None,
                }
            )  # fmt: skip
            rows[Job].append(
                {
                    "id": str(uuid.uuid4()), "kind": "grant", "connector": "directory",
                    "resource": f"group:{GROUP}", "role": "member", "subject_id": user,
                    "assignment_id": assignment, "state": "done", "attempts": 1,
                    "max_attempts": 10, "run_at": granted, "created_at": granted,
                    "finished_at": granted,
                }
            )  # fmt: skip
            rows[Membership].append({"group_id": GROUP, "user_id": user})
        with db.engine.begin() as connection:
            for model, batch in rows.items():
                connection.execute(insert(model.__table__), batch)


def measure(kind: str, n: int, server_url: str) -> dict[str, Any]:
    with fresh_database(kind, server_url, log) as url:
        db = Database(url)
        runtime = PolicyRuntime(load_texts({"reviewed.yaml": RULES}))
        connectors = Connectors(load_instances(None), DirectoryMemberships(db.session))
        try:
            db.upgrade()
            with db.session() as session:
                VersionService(session).publish(
                    SYSTEM, runtime.active.bundle.files, message="bench", now=OPENED
                )
            populate(db, n, runtime.active.version)
            with db.session() as session:
                started = time.perf_counter()
                assert ReviewService(session, runtime).open_due(now=OPENED) == 1
                opened = time.perf_counter() - started
                items = session.scalar(select(func.count()).select_from(ReviewItem))
            with db.session() as session:
                started = time.perf_counter()
                assert ReviewService(session, runtime).close_due(now=ENDED) == 1
                closed = time.perf_counter() - started
            worker = Worker(db.session, connectors, runtime)
            started, ran = time.perf_counter(), 0
            while batch := worker.run_jobs(now=ENDED, limit=1000):
                ran += batch
            revoked = time.perf_counter() - started
            with db.session() as session:
                members = session.scalar(select(func.count()).select_from(Membership))
                removed = session.scalar(
                    select(func.count()).select_from(Assignment).filter_by(state="removed")
                )
            return {
                "db": kind, "n": n, "items": items, "open": opened, "close": closed,
                "removed": removed, "jobs": ran, "revokes": revoked, "members": members,
            }  # fmt: skip
        finally:
            connectors.close()
            runtime.close()
            db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="assignments per campaign")
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.postgres else ["sqlite"]
    header = (
        f"{'db':10} {'assignments':>11} {'items':>7} {'open s':>7} {'close s':>8} "
        f"{'removed':>8} {'jobs run':>8} {'run s':>6} {'members left':>12}"
    )
    print(header)
    for kind in kinds:
        for n in (int(size) for size in args.sizes.split(",")):
            row = measure(kind, n, args.postgres_url)
            print(
                f"{row['db']:10} {row['n']:>11,} {row['items']:>7,} {row['open']:>7.2f} "
                f"{row['close']:>8.2f} {row['removed']:>8,} {row['jobs']:>8,} "
                f"{row['revokes']:>6.2f} {row['members']:>12,}",
                flush=True,
            )


if __name__ == "__main__":
    main()
