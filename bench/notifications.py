"""Notifications at scale: the expiry-reminder task over N assignments in many packages (some
with their own schedule) with owners' digests, and the cost of templates (load and render)."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from policyd.notify.sample import sample
from policyd.notify.template import Templates
from policyd.rules import PolicyRuntime, load_texts
from policyd.services.messages import Messages
from policyd.services.notifications import queue_reminders
from policyd.store import Database
from policyd.store.models import (
    AccessRequest,
    Assignment,
    DecisionRecord,
    Group,
    Job,
    Membership,
    User,
)
from throwaway import fresh_database

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SETTINGS = (timedelta(days=14), timedelta(days=1))
CHUNK = 5_000


def package(number: int) -> str:
    """A package owned by owner-<n>, managed by group G<n> (three members); every other
    package reminds 7 days before the end instead of the service's 14 and 1."""
    own = "  reminders: {expiry: [P7D]}\n" if number % 2 else ""
    return (
        f"apiVersion: policyd/v1\npackage:\n  id: pkg-{number}\n  displayName: Package {number}\n"
        f'  owners: ["user:owner-{number}"]\n  managers: ["group:G{number}"]\n'
        f"  lifetime: {{duration: P30D}}\n{own}"
        "  rules:\n    - id: all\n      then: {decision: auto_approve}\n"
    )


def populate(db: Database, n: int, packages: int) -> None:
    """N active assignments spread over `packages`, ending over the next 20 days."""
    people = [{"id": f"u{i}", "email": f"u{i}@example.org", "attributes": {}} for i in range(n)]
    admins = [f"owner-{p}" for p in range(packages)]
    admins += [f"m{p}-{k}" for p in range(packages) for k in range(3)]
    people += [{"id": a, "email": f"{a}@example.org", "attributes": {}} for a in admins]
    with db.engine.begin() as connection:
        for first in range(0, len(people), CHUNK):
            connection.execute(insert(User.__table__), people[first : first + CHUNK])
        connection.execute(insert(Group.__table__), [{"id": f"G{p}"} for p in range(packages)])
        members = [
            {"group_id": f"G{p}", "user_id": f"m{p}-{k}"} for p in range(packages) for k in range(3)
        ]
        connection.execute(insert(Membership.__table__), members)
        decision, request = str(uuid.uuid4()), str(uuid.uuid4())
        connection.execute(
            insert(DecisionRecord.__table__),
            [
                {
                    "id": decision,
                    "at": NOW,
                    "package": "pkg-0",
                    "subject_id": "u0",
                    "outcome": "auto_approve",
                    "rule": "all",
                    "matched": [],
                    "reason": "-",
                    "version": "bench",
                    "input": {},
                    "result": {},
                    "principal": "u0",
                }
            ],
        )
        connection.execute(
            insert(AccessRequest.__table__),
            [
                {
                    "id": request,
                    "package": "pkg-0",
                    "subject_id": "u0",
                    "principal": "u0",
                    "state": "delivered",
                    "stages": [],
                    "decision_id": decision,
                    "version": "bench",
                    "reason": "-",
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            ],
        )
        rows = [
            {
                "id": str(uuid.uuid4()),
                "subject_id": f"u{i}",
                "package": f"pkg-{i % packages}",
                "state": "active",
                "request_id": request,
                "decision_id": decision,
                "version": "bench",
                "starts_at": NOW - timedelta(days=10),
                "expires_at": NOW + timedelta(minutes=i * 20 * 24 * 60 // n + 1),
            }
            for i in range(n)
        ]
        for first in range(0, n, CHUNK):
            connection.execute(insert(Assignment.__table__), rows[first : first + CHUNK])


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="active assignments")
    parser.add_argument("--packages", type=int, default=50)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    load, templates = timed(Templates)
    rows.append(("load and check the shipped templates", f"{load * 1000:.1f} ms"))
    values = sample("approval_needed")
    count = 2000
    render, _ = timed(lambda: [templates.render("approval_needed", values) for _ in range(count)])
    rows.append(("render approval_needed (text + HTML)", f"{render / count * 1e6:.0f} µs"))
    runtime = PolicyRuntime(load_texts({f"p{p}.yaml": package(p) for p in range(args.packages)}))
    with fresh_database(args.database, args.server) as url:
        db = Database(url)
        try:
            db.upgrade()
            populate(db, args.n, args.packages)
            with db.session() as session:
                first, counts = timed(
                    lambda: queue_reminders(session, now=NOW, offsets=SETTINGS, runtime=runtime)
                )
            rows.append((f"reminder task, {args.n:,} active, first run", f"{first:.2f} s"))
            rows.append(
                ("  reminders / digests queued", f"{counts['reminders']:,} / {counts['digests']:,}")
            )
            with db.session() as session:
                again, _ = timed(
                    lambda: queue_reminders(session, now=NOW, offsets=SETTINGS, runtime=runtime)
                )
            rows.append(("reminder task, nothing new due", f"{again * 1000:.0f} ms"))
            with db.session() as session:
                digest = session.scalars(
                    select(Job).where(Job.resource.startswith("access_expiring_digest:"))
                ).first()
                messages = Messages(runtime=runtime)
                one, rendered = timed(
                    lambda: messages.render(
                        session, "access_expiring_digest", "x", None, digest.payload
                    )
                )
            listed = rendered.subject.rsplit(" ", 1)[-1]
            rows.append(
                (f"render one owner's digest ({listed} assignments)", f"{one * 1000:.0f} ms")
            )
        finally:
            db.dispose()
            runtime.close()
    width = max(len(name) for name, _ in rows)
    print(
        f"notifications ({args.database}, {args.packages} packages, half with their own schedule)"
    )
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>12}")


if __name__ == "__main__":
    sys.exit(main())
