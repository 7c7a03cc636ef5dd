"""A million assignments: seed PostgreSQL with 100,000 packages' worth of rows, then time a page
of every list, the access report and reconcile, printed as one table.

    python bench/million.py --scale 0.1       # a tenth: quick
    python bench/million.py                   # 1,000,000 assignments, 5,000,000 decisions

At scale 1: 200,000 users, 100,000 groups (one per package), 1,000,000 assignments (60 %
active), 1,020,000 requests of which 20,000 wait for approval (three approvers each, from
2,000 approvers), 5,000,000 decision-log entries, 1,000,000 grant jobs and 2,000,000 audit
records. The rows are made by PostgreSQL itself (INSERT ... SELECT over generate_series), with
the secondary indexes dropped during the load and built afterwards, then VACUUM ANALYZE.
Each call runs through the Flask app in this process (no HTTP server), `--calls` times after
two warm-up calls; the target is p99 <= 50 ms per page. The database is created fresh and
dropped afterwards. `seed()` is what bench/scale.py calls for its database rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import quote

# Run as `python bench/million.py`, this folder heads sys.path and its http.py would shadow
# the standard library's (as in bench/expiry.py): move it to the end.
sys.path.sort(
    key=lambda entry: (
        os.path.realpath(entry or os.curdir) == os.path.dirname(os.path.realpath(__file__))
    )
)

from sqlalchemy import create_engine, event, text

from policyd.api import create_app
from policyd.api.context import components
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from policyd.store import Database
from throwaway import postgres_database

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
TARGET_MS = 50.0
APPROVERS = 2_000
# Tables whose secondary indexes are dropped while they load, then built in one pass each.
LOADED = ("users", "groups", "memberships", "decisions", "requests", "stage_approvers",
          "assignments", "jobs", "audit")  # fmt: skip


def log(message: str) -> None:
    print(f"[million] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    users: int
    packages: int
    assignments: int
    pending: int
    decisions: int
    audit: int

    @classmethod
    def at(cls, scale: float) -> Sizes:
        def n(full: int) -> int:
            return max(10, round(full * scale))

        return cls(n(200_000), n(100_000), n(1_000_000), n(20_000), n(5_000_000), n(2_000_000))


def ident(n: str, salt: str) -> str:
    """SQL for the id of row `n` of a table, shaped like the service's (36 characters, time
    ordered: the row number in hex, then hash bits); `salt` keeps tables' ids apart."""
    hexed = f"lpad(to_hex({n}), 12, '0')"
    hashed = f"md5(({n})::text || '{salt}')"
    return (
        f"(substr({hexed}, 1, 8) || '-' || substr({hexed}, 9, 4) || '-7' || substr({hashed}, 1, 3)"
        f" || '-8' || substr({hashed}, 4, 3) || '-' || substr({hashed}, 7, 12))"
    )


def pkg(n: str) -> str:
    return f"('pkg-' || lpad(({n})::text, 6, '0'))"


def user(n: str) -> str:
    return f"('u' || lpad(({n})::text, 7, '0'))"


def statements(s: Sizes) -> list[tuple[str, str]]:
    """(what, SQL) in load order; every time is relative to NOW."""
    now = f"timestamptz '{NOW.isoformat()}'"
    a, r = s.assignments, s.assignments + s.pending
    package = pkg(f"(n * 7 + n / {s.users}) % {s.packages}")
    # Request n (n < assignments) granted assignment n, created over the past year in order.
    created = f"({now} - interval '365 days' + (n * (interval '365 days' / {r})))"
    return [
        (
            "users",
            f"""INSERT INTO users (id, email, display_name, type, attributes, state)
            SELECT {user("n")}, {user("n")} || '@example.org', 'User ' || n, 'member', '{{}}',
                   'active'
            FROM generate_series(0, {s.users - 1}) n""",
        ),
        (
            "groups",
            f"""INSERT INTO groups (id, display_name)
            SELECT 'Group.' || {pkg("n")} || '.Readers', 'Readers'
            FROM generate_series(0, {s.packages - 1}) n""",
        ),
        (
            "decisions",
            f"""INSERT INTO decisions (id, at, package, subject_id, outcome, rule,
                matched, reason, version, input, result, principal, kept)
            SELECT {ident("n", "d")},
                   {now} - interval '90 days' + n * (interval '90 days' / {s.decisions}),
                   {package}, {user(f"n % {s.users}")}, 'allow', 'eligible-members',
                   '["eligible-members"]', 'Eligible members are approved automatically', 'v1',
                   json_build_object('subject', json_build_object('id', {user(f"n % {s.users}")})),
                   '{{"outcome": "allow", "rule": "eligible-members"}}', {user(f"n % {s.users}")},
                   n < {r}  -- kept: request n refers to entry n % decisions
            FROM generate_series(0, {s.decisions - 1}) n""",
        ),
        (
            "requests",
            f"""INSERT INTO requests (id, package, subject_id, principal, state, stage,
                stages, decision_id, version, rule, reason, expires_at, created_at, updated_at)
            SELECT {ident("n", "r")}, {package}, {user(f"n % {s.users}")},
                   {user(f"n % {s.users}")},
                   CASE WHEN n < {a} THEN 'delivered' ELSE 'pending_approval' END,
                   CASE WHEN n < {a} THEN NULL ELSE 1 END,
                   CASE WHEN n < {a} THEN '[]'::json ELSE json_build_array(json_build_object(
                       'approvers', json_build_array({user(f"n % {APPROVERS}")},
                           {user(f"(n + 1) % {APPROVERS}")}, {user(f"(n + 2) % {APPROVERS}")}),
                       'escalate_to', json_build_array(), 'refs', json_build_array(),
                       'timeout_seconds', 259200)) END,
                   {ident(f"n % {s.decisions}", "d")}, 'v1', 'eligible-members', 'bench',
                   {created} + interval '90 days', {created}, {created}
            FROM generate_series(0, {r - 1}) n""",
        ),
        (
            "stage_approvers",
            f"""INSERT INTO stage_approvers (request_id, user_id)
            SELECT {ident("n", "r")}, {user(f"(n + k) % {APPROVERS}")}
            FROM generate_series({a}, {r - 1}) n, generate_series(0, 2) k""",
        ),
        (
            "assignments",
            f"""INSERT INTO assignments (id, subject_id, package, state, request_id,
                decision_id, version, rule, starts_at, expires_at, removed_at)
            SELECT {ident("n", "a")}, {user(f"n % {s.users}")}, {package},
                   CASE WHEN n % 10 < 6 THEN 'active' ELSE 'removed' END,
                   {ident("n", "r")}, {ident(f"n % {s.decisions}", "d")}, 'v1',
                   'eligible-members', {created}, {created} + interval '90 days',
                   CASE WHEN n % 10 < 6 THEN NULL ELSE {created} + interval '30 days' END
            FROM generate_series(0, {a - 1}) n""",
        ),
        (
            "memberships",
            """INSERT INTO memberships (group_id, user_id)
            SELECT DISTINCT 'Group.' || package || '.Readers', subject_id
            FROM assignments WHERE state = 'active'""",
        ),
        (
            "jobs",
            f"""INSERT INTO jobs (id, kind, connector, resource, role, subject_id,
                assignment_id, state, attempts, max_attempts, run_at, created_at, finished_at)
            SELECT {ident("n", "j")}, 'grant', 'directory',
                   'group:Group.' || {package} || '.Readers', 'member', {user(f"n % {s.users}")},
                   {ident("n", "a")}, 'done', 1, 5, {created}, {created}, {created}
            FROM generate_series(0, {a - 1}) n""",
        ),
        (
            "audit",
            f"""INSERT INTO audit (id, at, actor, action, object_type, object_id, before,
                after, version, request_id, prev_hash, hash)
            SELECT n, {now} - interval '365 days' + n * (interval '365 days' / {s.audit}),
                   {user(f"n % {s.users}")},
                   (ARRAY['request.created', 'request.delivered', 'assignment.expired',
                          'directory.user_updated'])[1 + n % 4],
                   'request', {ident(f"n / 2 % {r}", "r")}, NULL,
                   json_build_object('state', 'delivered'), 'v1', NULL,
                   md5((n - 1)::text) || md5((n - 1)::text), md5(n::text) || md5(n::text)
            FROM generate_series(1, {s.audit}) n""",
        ),
    ]


def seed(url: str, scale: float = 1.0, progress: Callable[[str], None] = log) -> dict[str, float]:
    """Fill the (migrated, empty) PostgreSQL database at `url` with `scale` times the
    million-assignment data set; seconds per table and in all."""
    sizes = Sizes.at(scale)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    took: dict[str, float] = {}
    started = time.perf_counter()
    try:
        with engine.connect() as connection:
            kept = connection.execute(
                text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(:t)"
                    " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
                ),
                {"t": list(LOADED)},
            ).all()
            for name, _ in kept:
                connection.execute(text(f'DROP INDEX "{name}"'))
            for what, sql in statements(sizes):
                begun = time.perf_counter()
                count = connection.execute(text(sql)).rowcount
                took[what] = time.perf_counter() - begun
                progress(f"{what}: {count:,} rows in {took[what]:.1f} s")
            begun = time.perf_counter()
            for _, definition in kept:
                # pg_indexes shows a partitioned table's index as CREATE INDEX ... ON ONLY,
                # which would build it on the parent alone: build it on every partition.
                connection.execute(text(definition.replace(" ON ONLY ", " ON ", 1)))
            took["indexes"] = time.perf_counter() - begun
            progress(f"{len(kept)} secondary indexes built in {took['indexes']:.1f} s")
            begun = time.perf_counter()
            connection.execute(text("VACUUM ANALYZE"))
            took["vacuum analyze"] = time.perf_counter() - begun
    finally:
        engine.dispose()
    took["total"] = time.perf_counter() - started
    progress(f"seeded in {took['total']:.1f} s")
    return took


@dataclass(frozen=True)
class Timing:
    call: str
    p50: float
    p99: float
    sql: float | None = None  # what PostgreSQL spent on the call's SELECTs (EXPLAIN ANALYZE)
    note: str = ""
    count: float | None = None  # the part of `sql` that counted rows for a numbered page


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextmanager
def app_on(url: str) -> Iterator:
    application = create_app(
        {"POLICYD_DATABASE_URL": url, "POLICYD_POLICIES": str(POLICIES), "TESTING": True}
    )
    try:
        yield application
    finally:
        components(application).decision_log.close()
        components(application).runtime.close()
        components(application).database.dispose()


def calls(s: Sizes, cursor: Callable[[str, int], str]) -> list[tuple[str, str, str]]:
    """(label, url, who) of each timed call; `cursor(url, row)` is the cursor after `row`."""
    package, subject = "pkg-000042", "u0000042"
    report = f"/v1/access-report?at={quote((NOW - timedelta(days=100)).isoformat())}"
    deep_a, deep_d = s.assignments // 2, s.decisions // 2
    expiring = quote((NOW + timedelta(days=30)).isoformat())
    return [
        ("GET /v1/assignments page 1 (with total)", "/v1/assignments", "admin"),
        ("GET /v1/assignments page 5,000 (offset)", "/v1/assignments?page=5000", "admin"),
        ("GET /v1/assignments?after= (first)", "/v1/assignments?after=", "admin"),
        (f"… after row {deep_a:,}", cursor("/v1/assignments", deep_a), "admin"),
        ("… ?package=&after=", f"/v1/assignments?package={package}&after=", "admin"),
        ("… ?state=active&after=", "/v1/assignments?state=active&after=", "admin"),
        (
            "… ?expiring_before=+30d&after=",
            f"/v1/assignments?expiring_before={expiring}&after=",
            "admin",
        ),
        (
            f"… ?expiring_before=+30d after row {deep_a // 2:,}",
            cursor(f"/v1/assignments?expiring_before={expiring}", deep_a // 2),
            "admin",
        ),
        ("… ?subject= (with total)", f"/v1/assignments?subject={subject}", "admin"),
        ("GET /v1/requests page 1 (with total)", "/v1/requests", "admin"),
        ("GET /v1/requests?after= (first)", "/v1/requests?after=", "admin"),
        (f"… after row {deep_a:,}", cursor("/v1/requests", deep_a), "admin"),
        ("… ?state=pending_approval&after=", "/v1/requests?state=pending_approval&after=", "admin"),
        ("… ?approver=me (inbox, with total)", "/v1/requests?approver=me", "approver"),
        ("… ?subject= (with total)", f"/v1/requests?subject={subject}", "admin"),
        ("GET /v1/users page 1 (with total)", "/v1/users", "admin"),
        ("GET /v1/users page 5,000 (offset)", "/v1/users?page=5000", "admin"),
        ("GET /v1/groups page 1 (with total)", "/v1/groups", "admin"),
        ("GET /v1/decisions page 1 (with total)", "/v1/decisions", "admin"),
        ("GET /v1/decisions?after= (first)", "/v1/decisions?after=", "admin"),
        (f"… after row {deep_d:,}", cursor("/v1/decisions", deep_d), "admin"),
        ("… ?subject=&after=", f"/v1/decisions?subject={subject}&after=", "admin"),
        ("GET /v1/audit page 1 (with total)", "/v1/audit", "admin"),
        ("GET /v1/audit?after= (first)", "/v1/audit?after=", "admin"),
        (f"… after row {s.audit // 2:,}", cursor("/v1/audit", s.audit // 2), "admin"),
        ("GET /v1/jobs page 1 (with total)", "/v1/jobs", "admin"),
        ("GET /v1/jobs?after= (first)", "/v1/jobs?after=", "admin"),
        ("… ?state=done&after=", "/v1/jobs?state=done&after=", "admin"),
        ("GET /v1/access-report?package= (with total)", f"{report}&package={package}", "admin"),
        ("GET /v1/access-report?subject= (with total)", f"{report}&subject={subject}", "admin"),
    ]


def measure(url: str, scale: float = 1.0, repeat: int = 50) -> list[Timing]:
    """Time each list call `repeat` times (after two warm-up calls) on the seeded database."""
    sizes = Sizes.at(scale)
    with app_on(url) as application:
        with components(application).database.session() as session:
            _, admin = TokenService(session).create(SYSTEM, "root", "admin", now=NOW)
            _, approver = TokenService(session).create(SYSTEM, "u0000001", "user", now=NOW)
        heads = {
            "admin": {"Authorization": f"Bearer {admin}"},
            "approver": {"Authorization": f"Bearer {approver}"},
        }
        client = application.test_client()

        def cursor(list_url: str, row: int) -> str:
            """The cursor after `row`: read once, by offset, from a numbered page."""
            page, sep = row // 100, "&" if "?" in list_url else "?"
            numbered = f"{list_url}{sep}page={page}&page_size=100"
            after = json.loads(client.get(numbered, headers=heads["admin"]).headers["X-Pagination"])
            return f"{list_url}{sep}after={after['next_after']}"

        results = []
        for label, call_url, who in calls(sizes, cursor):
            times = []
            for attempt in range(repeat + 2):
                begun = time.perf_counter()
                response = client.get(call_url, headers=heads[who])
                took = (time.perf_counter() - begun) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{call_url}: {response.status_code} {response.json}")
                if attempt >= 2:
                    times.append(took)
            again = partial(client.get, call_url, headers=heads[who])
            sql, count = database_ms(application, again)
            note = counted(response.headers)
            results.append(
                Timing(label, quantile(times, 0.5), quantile(times, 0.99), sql, note, count)
            )
            log(f"{label}: p50 {results[-1].p50:.1f} ms, p99 {results[-1].p99:.1f} ms, "
                f"SQL {sql:.1f} ms, count {count:.1f} ms")  # fmt: skip
        results += time_reconcile(application)
    return results


def counted(headers) -> str:
    """What a numbered page's X-Pagination says of the total ("" on a cursor page)."""
    page = json.loads(headers.get("X-Pagination", "{}"))
    if "total" in page:
        return f"total {page['total']:,}"
    if "total_more_than" in page:
        return f"total more than {page['total_more_than']:,}"
    return ""


def database_ms(application, call: Callable[[], object]) -> tuple[float, float]:
    """Milliseconds PostgreSQL spends planning and running the SELECTs that `call` sends: the
    part of a page that grows with the tables, whatever else runs on the machine; and the
    part of it that counted rows (a numbered page's total)."""
    engine = components(application).database.engine
    sent: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    total = counting = 0.0
    with engine.connect() as connection:
        for statement, parameters in sent:
            explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}"
            plan = connection.exec_driver_sql(explain, parameters).scalar_one()[0]
            took = plan["Planning Time"] + plan["Execution Time"]
            total += took
            if "count(*)" in statement:
                counting += took
    return total, counting


def time_reconcile(application) -> list[Timing]:
    """One `policyd reconcile` pass (no --fix) over every granted resource, timed a page at a
    time (at most 1,000 resources and PAGE_GRANTS grants): each page's own time (reading its
    grants, comparing, minus the connector's members_of calls), its CPU time (this process
    and its PostgreSQL backends, the directory connector included: what a shared machine's
    load does not inflate), and the whole pass."""
    from policyd.services.reconcile import PAGE_GRANTS, reconcile_pages

    connectors = components(application).connectors
    listing = connectors.get("directory")
    asked: list[float] = []
    members_of = listing.members_of

    def timed(resources):
        begun = time.perf_counter()
        try:
            return members_of(resources)
        finally:
            asked.append((time.perf_counter() - begun) * 1000)

    listing.members_of = timed
    own, cpu, resources = [], [], 0
    backends = Backends(components(application).database.engine)
    try:
        with components(application).database.session() as session:
            started = begun = time.perf_counter()
            used = time.process_time() * 1000 + backends.cpu_ms()
            for page in reconcile_pages(session, connectors, now=NOW):
                own.append((time.perf_counter() - begun) * 1000 - sum(asked))
                now_used = time.process_time() * 1000 + backends.cpu_ms()
                cpu.append(now_used - used)
                resources += len(page)
                asked.clear()
                begun, used = time.perf_counter(), now_used
            whole = (time.perf_counter() - started) * 1000
    finally:
        del listing.members_of
        backends.close()
    log(f"reconcile: {len(own)} pages, own p99 {quantile(own, 0.99):.1f} ms, {whole:.0f} ms")
    return [
        Timing(
            "reconcile, a page of resources (own time)",
            quantile(own, 0.5),
            quantile(own, 0.99),
            note=f"{len(own)} pages of up to {PAGE_GRANTS:,} grants",
        ),
        Timing(
            "… its CPU time, with PostgreSQL's" + ("" if backends.readable else " (not readable)"),
            quantile(cpu, 0.5),
            quantile(cpu, 0.99),
        ),
        Timing("reconcile (one pass, no --fix)", whole, whole, note=f"{resources:,} resources"),
    ]


class Backends:
    """CPU time of the PostgreSQL backends serving this database, read from /proc (the
    server on this machine; 0 when it is elsewhere)."""

    def __init__(self, engine):
        self.connection = engine.connect()
        own = self.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        self.readable = os.path.exists(f"/proc/{own}/schedstat")

    def _pids(self) -> list[int]:
        pids = self.connection.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalars()
        self.connection.rollback()
        return list(pids) if self.readable else []

    def cpu_ms(self) -> float:
        total = 0.0
        for pid in self._pids():
            try:
                with open(f"/proc/{pid}/schedstat") as stat:
                    total += int(stat.read().split()[0]) / 1e6
            except OSError:
                continue  # the backend ended
        return total

    def close(self) -> None:
        self.connection.close()


def table(sizes: Sizes, took: dict[str, float], results: list[Timing]) -> str:
    lines = [
        f"{sizes.assignments:,} assignments, {sizes.decisions:,} decisions, {sizes.users:,} "
        f"users, {sizes.pending:,} pending requests, {sizes.audit:,} audit records; "
        f"seeded in {took['total']:.0f} s",
        "",
        f"| call | p50 ms | p99 ms | p99 ≤ {TARGET_MS:g} ms | SQL ms | of it, count ms |",
        "|---|---|---|---|---|---|",
    ]
    for row in results:
        verdict = "yes" if row.p99 <= TARGET_MS else "no"
        note = f" ({row.note})" if row.note else ""
        sql = "" if row.sql is None else f"{row.sql:.1f}"
        count = f"{row.count:.1f}" if row.count else ""
        lines.append(
            f"| {row.call}{note} | {row.p50:.1f} | {row.p99:.1f} | {verdict} | {sql} | {count} |"
        )
    lines += ["", f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"]
    return "\n".join(lines)


def run(scale: float = 1.0, repeat: int = 50, postgres_url: str = DEFAULT_POSTGRES) -> str:
    """Seed a throwaway PostgreSQL database at `scale`, time every call, drop it; the table
    (what bench/scale.py prints for its database figures)."""
    with postgres_database(postgres_url, log) as url:
        database = Database(url)
        database.upgrade()
        database.dispose()
        took = seed(url, scale)
        results = measure(url, scale, repeat)
    return table(Sizes.at(scale), took, results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full data set")
    parser.add_argument("--calls", type=int, default=50, help="timed calls per row")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="a server to create on")
    args = parser.parse_args(argv)
    print(run(args.scale, args.calls, args.postgres_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
