"""Separation of duties: what a check costs a filing or an approval, and how long the report
takes over many holders.

    python bench/sod.py [--people 50000] [--database sqlite|postgresql|both]
                        [--postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

Each person holds scope-a-readers and half of them payments-entry; one in a hundred also holds
quarter-end-close (incompatible with payments-entry) and one in a hundred of the payments-entry
holders is in Payments.Clerks (declared incompatible with payments-entry for this run).
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/sod.py`, this file's folder heads sys.path and its neighbour http.py
# would shadow the standard library's `http`; move that folder to the end (as bench/expiry.py).
sys.path.sort(
    key=lambda entry: (
        os.path.realpath(entry or os.curdir) == os.path.dirname(os.path.realpath(__file__))
    )
)

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from policyd.rules import PolicyRuntime, load_bundle, load_texts
from policyd.services.actor import SYSTEM
from policyd.services.sod import APPROVED, SodService
from policyd.store import Database
from policyd.store.models import (
    AccessRequest,
    Assignment,
    DecisionRecord,
    Group,
    Membership,
    User,
)
from policyd.store.query import insert_many
from policyd.store.types import new_id
from throwaway import postgres_database

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
POLICIES = Path(__file__).resolve().parent.parent / "policies"


def bundle():
    files = dict(load_bundle(POLICIES).files)
    files["payments-entry.yaml"] = files["payments-entry.yaml"].replace(
        "  resources:", "  incompatibleGroups: [Payments.Clerks]\n  resources:"
    )
    return load_texts(files)


def fill(database: Database, people: int) -> tuple[int, int]:
    """Users, memberships and live assignments; returns (assignments, expected conflicts)."""
    with database.session() as session:
        decision = DecisionRecord(
            id=new_id(),
            at=NOW,
            package="x",
            subject_id="x",
            outcome="deny",
            rule=None,
            matched=[],
            reason="",
            version="bench",
            input={},
            result={},
            principal="bench",
        )
        request = AccessRequest(
            id=new_id(),
            package="x",
            subject_id="x",
            principal="bench",
            state="delivered",
            stages=[],
            decision_id=decision.id,
            version="bench",
            rule=None,
            reason="",
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(decision)
        session.flush()
        session.add(request)
        session.add(Group(id="Payments.Clerks", display_name=None))
        session.flush()
        users, members, assignments, conflicts = [], [], [], 0
        for i in range(people):
            uid = f"u{i:07d}"
            users.append({"id": uid, "type": "member", "attributes": {}})
            held = ["scope-a-readers"]
            if i % 2 == 0:
                held.append("payments-entry")
                if i % 200 == 0:
                    held.append("quarter-end-close")
                    conflicts += 1
                if i % 200 == 2:
                    members.append({"group_id": "Payments.Clerks", "user_id": uid})
                    conflicts += 1
            for package in held:
                assignments.append(
                    {
                        "id": new_id(),
                        "subject_id": uid,
                        "package": package,
                        "state": "active",
                        "request_id": request.id,
                        "decision_id": decision.id,
                        "version": "bench",
                        "rule": "r",
                        "starts_at": NOW,
                    }
                )
        insert_many(session, User, users)
        insert_many(session, Membership, members)
        insert_many(session, Assignment, assignments)
        session.commit()
    if database.engine.dialect.name == "postgresql":
        # As autovacuum would soon after a bulk load: the planner needs row counts.
        with database.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return len(assignments), conflicts


def run(url: str, label: str, people: int) -> list[str]:
    database = Database(url)
    database.upgrade()
    runtime = PolicyRuntime(bundle())
    try:
        count, expected = fill(database, people)
        rows = []
        with database.session() as session:
            service = SodService(session, runtime)
            started = time.perf_counter()
            _, total = service.violations(SYSTEM, offset=0, limit=100)
            page_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            everything = sum(1 for _ in service.all_violations(SYSTEM))
            all_ms = (time.perf_counter() - started) * 1000
        assert total == everything == expected, (total, everything, expected)
        timings = []
        subject = "u0000004"  # holds payments-entry: quarter-end-close conflicts with it
        for _ in range(500):
            with database.session() as session:
                service = SodService(session, runtime)
                started = time.perf_counter()
                service.lock(subject)
                found = service.conflicts(
                    service.subject(subject), "quarter-end-close", counting=APPROVED, now=NOW
                )
                timings.append((time.perf_counter() - started) * 1000)
                session.rollback()
            assert [c.other for c in found] == ["payments-entry"]
        timings.sort()
        rows.append(
            f"{label:<10} {count:>11,} {total:>9,} {page_ms:>10.1f} {all_ms:>9.1f} "
            f"{statistics.median(timings):>9.2f} {timings[int(len(timings) * 0.99)]:>7.2f}"
        )
        return rows
    finally:
        runtime.close()
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    print(
        f"{'database':<10} {'assignments':>11} {'conflicts':>9} {'1st page ms':>10} "
        f"{'all ms':>9} {'check p50':>9} {'p99 ms':>7}"
    )
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            for line in run(f"sqlite:///{folder}/sod.db", "sqlite", args.people):
                print(line)
    if args.database in ("postgresql", "both"):
        with postgres_database(args.postgres_url) as url:
            for line in run(url, "postgresql", args.people):
                print(line)
    print("check: lock + conflicts (one engine evaluation, two indexed queries) per approval")


if __name__ == "__main__":
    main()
