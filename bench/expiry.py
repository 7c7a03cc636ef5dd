"""Mass expiry: N assignments expire at one instant; how long until the worker removes them all."""

from __future__ import annotations

import os
import sys

# Run as `python bench/expiry.py`, this file's folder heads sys.path and its neighbour http.py
# would shadow the standard library's `http` (the httpx-based connectors import it); move that
# folder to the end. Spawned workers inherit this sys.path. The checkout's root follows it:
# --target ldap starts slapd with the tests' support code (tests.connectors.ldap_server).
sys.path.sort(
    key=lambda entry: (
        os.path.realpath(entry or os.curdir) == os.path.dirname(os.path.realpath(__file__))
    )
)
sys.path.append(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

import argparse
import cProfile
import io
import json
import multiprocessing
import pstats
import queue
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.engine import Connection

import expiry_data
import expiry_ldap
from policyd.connectors.config import Connectors, load_instances
from policyd.domain import Outcome
from policyd.rules import PolicyRuntime, load_bundle
from policyd.services.actor import SYSTEM
from policyd.services.assignments import LIVE_STATES, AssignmentService
from policyd.services.jobs import MAX_ATTEMPTS
from policyd.services.memberships import DirectoryMemberships
from policyd.services.versions import PolicySync, VersionService
from policyd.store import Database
from policyd.store.models import (
    AccessRequest,
    Assignment,
    AuditRecord,
    DecisionRecord,
    Group,
    Job,
    Membership,
    User,
)
from policyd.worker import EXPIRY_BATCH, Worker
from throwaway import fresh_database

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
PACKAGE = "scope-a-readers"
RULE = "eligible-members"
CONNECTOR = "directory"
GROUP = "Group.ScopeA.Readers"
RESOURCE = f"group:{GROUP}"
ROLE = "member"
HELD = timedelta(hours=8)  # how long before T the access was granted
GRACE = timedelta(seconds=1)  # the sweep runs at T + GRACE
CHUNK = 5_000  # rows per executemany (SQLite)
REASON = "Members of Group.ScopeA.Readers.Eligible are approved automatically"
# The goals on PostgreSQL with two workers, by connector: (N, seconds), growing linearly.
TARGETS = {"directory": (1_000_000, 300.0), "ldap": (100_000, 120.0)}
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def log(message: str) -> None:
    print(f"[expiry] {message}", file=sys.stderr, flush=True)


# --- database and data -------------------------------------------------------------------------


def _insert(connection: Connection, model: Any, rows: list[dict[str, Any]]) -> None:
    connection.execute(insert(model.__table__), rows)  # Core executemany, no ORM units of work


def populate(url: str, n: int, expires_at: datetime, deadline: float, ldap: bool = False) -> float:
    """Migrate, publish the example policies and bulk-insert N active, granted assignments
    (on PostgreSQL made by the server: bench/expiry_data.py).

    Every assignment is the only one granting the group to its user, so each needs a revoke.
    With `ldap`, the group is in slapd (the caller fills it): its grants name the `ldap`
    connector, and policyd's directory holds no memberships. Returns the seconds the inserts
    took.
    """
    granted = expires_at - HELD
    db = Database(url)
    try:
        db.upgrade()
        with db.session() as session:
            files = load_bundle(POLICIES).files
            version = VersionService(session).publish(SYSTEM, files, message="bench", now=granted)
            version_id = version.id
        started = time.perf_counter()
        with db.engine.begin() as connection:
            _insert(connection, Group, [{"id": GROUP, "display_name": GROUP}])
        connector, resource = (
            (expiry_ldap.CONNECTOR, expiry_ldap.RESOURCE) if ldap else (CONNECTOR, RESOURCE)
        )
        if db.is_sqlite:
            _insert_rows(db, n, version_id, granted, expires_at, deadline, ldap)
        else:
            values = {
                "version": version_id,
                "granted": granted,
                "expires": expires_at,
                "package": PACKAGE,
                "rule": RULE,
                "reason": REASON,
                "outcome": Outcome.AUTO_APPROVE.value,
                "matched": json.dumps([RULE]),
                "result": json.dumps({"outcome": Outcome.AUTO_APPROVE.value, "rule": RULE}),
                "group": GROUP,
                "connector": connector,
                "resource": resource,
                "role": ROLE,
                "attempts": MAX_ATTEMPTS,
            }
            tables = ("memberships",) if ldap else ()
            expiry_data.seed(
                db.engine.connect, n, values, lambda: time.monotonic() > deadline, skip=tables
            )
            # Fresh planner statistics, as autovacuum would have gathered on a real table.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        return time.perf_counter() - started
    finally:
        db.dispose()


def _insert_rows(
    db: Database,
    n: int,
    version: str,
    granted: datetime,
    expires_at: datetime,
    deadline: float,
    ldap: bool,
) -> None:
    """SQLite's rows, made in Python and inserted CHUNK at a time (executemany)."""
    models = [User, DecisionRecord, AccessRequest, Assignment, Job] + ([] if ldap else [Membership])
    for first in range(0, n, CHUNK):
        if time.monotonic() > deadline:
            raise TimeoutError("--timeout reached while inserting the data")
        rows = [
            _rows(i, version, granted, expires_at, ldap)
            for i in range(first, min(n, first + CHUNK))
        ]
        with db.engine.begin() as connection:
            for model in models:
                _insert(connection, model, [row[model] for row in rows])


def _rows(
    i: int, version: str, granted: datetime, expires_at: datetime, ldap: bool = False
) -> dict[Any, dict]:
    user = f"bench-user-{i:07d}"
    decision, request, assignment = (str(uuid.uuid4()) for _ in range(3))
    reason = REASON
    return {
        User: {
            "id": user,
            "email": f"{user}@example.org",
            "display_name": f"Bench user {i}",
            "type": "member",
            "attributes": {},
        },
        DecisionRecord: {
            "id": decision,
            "at": granted,
            "package": PACKAGE,
            "subject_id": user,
            "outcome": Outcome.AUTO_APPROVE.value,
            "rule": RULE,
            "matched": [RULE],
            "reason": reason,
            "version": version,
            "input": {"subject": {"id": user}},
            "result": {"outcome": Outcome.AUTO_APPROVE.value, "rule": RULE},
            "principal": user,
        },
        AccessRequest: {
            "id": request,
            "package": PACKAGE,
            "subject_id": user,
            "principal": user,
            "state": "delivered",
            "stages": [],
            "decision_id": decision,
            "version": version,
            "rule": RULE,
            "reason": reason,
            "expires_at": expires_at,
            "created_at": granted,
            "updated_at": granted,
        },
        Assignment: {
            "id": assignment,
            "subject_id": user,
            "package": PACKAGE,
            "state": "active",
            "request_id": request,
            "decision_id": decision,
            "version": version,
            "rule": RULE,
            "starts_at": granted,
            "expires_at": expires_at,
        },
        Job: {
            "id": str(uuid.uuid4()),
            "kind": "grant",
            "connector": expiry_ldap.CONNECTOR if ldap else CONNECTOR,
            "resource": expiry_ldap.RESOURCE if ldap else RESOURCE,
            "role": ROLE,
            "subject_id": user,
            "assignment_id": assignment,
            "state": "done",
            "attempts": 1,
            "max_attempts": MAX_ATTEMPTS,
            "run_at": granted,
            "created_at": granted,
            "finished_at": granted,
        },
        Membership: {"group_id": GROUP, "user_id": user},
    }


# --- the workers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepTiming:
    """Wall-clock times (time.time()) of one sweep; `expired_at`: its last expiry batch's
    commit (expiry and jobs overlap on PostgreSQL)."""

    started: float
    expired_at: float
    ended: float
    expired: int
    jobs: int


@dataclass
class WorkerReport:
    index: int
    sweeps: list[SweepTiming] = field(default_factory=list)
    removed: dict[str, float] = field(default_factory=dict)  # assignment id -> wall clock
    cpu: float = 0.0  # this process's CPU seconds while sweeping
    backend_cpu: float | None = None  # its PostgreSQL backends' (None: server not on this host)
    error: str | None = None


class TimedWorker(Worker):
    """The real Worker, noting when each sweep changes phase and each removal commits: with
    its revoke job's outcome, or (policyd's own directory) with its expiry batch."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sweeps: list[SweepTiming] = []
        self.removed: dict[str, float] = {}
        self._revoking: dict[str, str] = {}  # revoke job id -> its assignment, while it runs
        note_batch_removals(self.removed)

    def sweep(self, *, now: datetime, batch: int = EXPIRY_BATCH) -> dict[str, int]:
        started = time.time()
        result = super().sweep(now=now, batch=batch)
        ended = time.time()
        # The expiry task's run ends with its last batch's commit.
        expiry = self.scheduler.last.get("assignments.expire")
        expired_at = expiry.ended if expiry is not None and result["expired"] else started
        timing = SweepTiming(started, expired_at, ended, result["expired"], result["jobs"])
        self.sweeps.append(timing)
        return result

    def _run_bulk(self, kind: str, name: str, jobs: list[Any], targets: Any) -> Any:
        self._note_revokes(jobs)
        return super()._run_bulk(kind, name, jobs, targets)

    def _run(self, job: Any, targets: Any) -> Any:
        self._note_revokes([job])
        return super()._run(job, targets)

    def _note_revokes(self, jobs: list[Any]) -> None:
        self._revoking.update(
            (job.id, job.assignment_id)
            for job in jobs
            if job.kind == "revoke" and job.assignment_id
        )

    def _record(self, outcomes: dict[str, Any], now: datetime) -> None:
        # `now` is fixed for the whole run, so finished_at cannot date the removal: the wall
        # clock after the outcomes' commit (jobs, assignments and audit in one transaction) can.
        super()._record(outcomes, now)
        committed = time.time()
        for job_id, outcome in outcomes.items():
            assignment_id = self._revoking.pop(job_id, None)
            if outcome is None and assignment_id:
                self.removed[assignment_id] = committed


def note_batch_removals(removed: dict[str, float]) -> None:
    """In this worker process, note in `removed` the assignments an expiry batch removed
    itself (no revoke job: a group of policyd's own directory), at its commit."""
    end_many, expire_due = AssignmentService.end_many, AssignmentService.expire_due
    ended = threading.local()  # the expiry runs in a thread of its own on PostgreSQL

    def noting_end_many(
        service: AssignmentService, actor: Any, assignments: Any, *a: Any, **k: Any
    ) -> None:
        end_many(service, actor, assignments, *a, **k)
        ended.ids = [x.id for x in assignments if x.state == "removed"]

    def noting_expire_due(service: AssignmentService, **kwargs: Any) -> int:
        ended.ids = []
        count = expire_due(service, **kwargs)  # ends its batch and commits
        committed = time.time()
        removed.update(dict.fromkeys(ended.ids, committed))
        return count

    AssignmentService.end_many = noting_end_many  # type: ignore[method-assign]
    AssignmentService.expire_due = noting_expire_due  # type: ignore[method-assign]


def due(db: Database, now: datetime) -> int:
    """Expired live assignments plus due queued jobs, as committed right now."""
    with db.session() as session:
        assignments = select(func.count()).where(
            Assignment.state.in_(LIVE_STATES), Assignment.expires_at <= now
        )
        jobs = select(func.count()).where(Job.state == "queued", Job.run_at <= now)
        return (session.scalar(assignments) or 0) + (session.scalar(jobs) or 0)


class Backends:
    """The PostgreSQL server processes serving one engine's connections, and the CPU time
    they used (read from /proc: only when the server runs on this host)."""

    def __init__(self, db: Database):
        self.pids: set[int] = set()
        if not db.is_sqlite:
            event.listen(db.engine, "connect", self._connected)

    def _connected(self, connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        self.pids.add(cursor.fetchone()[0])
        cursor.close()
        connection.rollback()  # leave it as the pool expects it: no transaction open

    def cpu(self) -> float | None:
        """Their CPU seconds so far (user + system); None when they cannot be read."""
        total = 0.0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total if self.pids else None


def work(
    index: int,
    url: str,
    now: datetime,
    batch: int,
    barrier: Barrier,
    results: multiprocessing.Queue,
    profile: str | None,
    ldap_url: str | None = None,
) -> None:
    """One worker process: built like `policyd worker`, it sweeps until nothing is due
    (revoking through slapd at `ldap_url`, when given)."""
    report = WorkerReport(index)
    db = Database(url)
    backends = Backends(db)
    runtime = PolicyRuntime()
    try:
        PolicySync(runtime, db.session).sync()
        instances, environ = load_instances(None), {}
        if ldap_url is not None:
            instances[expiry_ldap.CONNECTOR] = expiry_ldap.instance(ldap_url)
            environ = expiry_ldap.ENVIRON
        connectors = Connectors(instances, DirectoryMemberships(db.session), environ)
        worker = TimedWorker(db.session, connectors, runtime)
        barrier.wait()
        cpu, backend_cpu = time.process_time(), backends.cpu()
        profiler = cProfile.Profile()
        if profile:
            profile_tasks(worker, profile + ".tasks")
            profiler.enable()
        while True:
            if any(worker.sweep(now=now, batch=batch).values()):
                continue
            if not due(db, now):
                break
            time.sleep(0.05)  # another worker holds the rest locked; its commit frees them
        if profile:
            profiler.disable()
            profiler.dump_stats(profile)
        report.sweeps, report.removed = worker.sweeps, worker.removed
        report.cpu = time.process_time() - cpu
        after = backends.cpu()
        if after is not None and backend_cpu is not None:
            report.backend_cpu = after - backend_cpu
    except Exception:
        barrier.abort()  # the others (and the parent) stop waiting for this one
        report.error = traceback.format_exc()
    finally:
        runtime.close()
        db.dispose()
    results.put(report)


def profile_tasks(worker: TimedWorker, path: str) -> None:
    """Profile what the worker runs beside its outbox (the expiry task, in its own thread on
    PostgreSQL) into `path`: cProfile sees one thread only."""
    tasks = cProfile.Profile()
    run_all = worker.scheduler._run_all

    def profiled(*args: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            return run_all(*args)  # no thread of their own: the main profile has them
        tasks.enable()
        try:
            return run_all(*args)
        finally:
            tasks.disable()
            tasks.dump_stats(path)

    worker.scheduler._run_all = profiled


# --- one run -----------------------------------------------------------------------------------


@dataclass
class Checks:
    removed: int = 0
    memberships: int = 0
    jobs: dict[str, int] = field(default_factory=dict)  # jobs the sweeps ran, by kind
    problems: list[str] = field(default_factory=list)


@dataclass
class Result:
    database: str
    workers: int
    n: int
    via: str = "directory"  # the connector that removes the access: directory or ldap
    setup: float = 0.0
    expire: float = 0.0
    revoke: float = 0.0
    total: float = 0.0
    latencies: list[float] = field(default_factory=list)
    # per worker: expired, jobs, CPU s, its PostgreSQL backends' CPU s (None: not measured)
    shares: list[tuple[int, int, float, float | None]] = field(default_factory=list)
    checks: Checks = field(default_factory=Checks)
    status: str = "ok"
    calibration: str = ""
    slapd_cpu: float | None = None  # slapd's CPU seconds during the sweep (--target ldap)


def verify(url: str, n: int, now: datetime, ldap_url: str | None = None) -> Checks:
    """Every assignment removed, every membership gone (of slapd's group, with `ldap_url`),
    every revoke run exactly once."""
    db = Database(url)
    checks = Checks()
    problems = checks.problems
    try:
        with db.session() as session:
            states = dict(
                session.execute(
                    select(Assignment.state, func.count()).group_by(Assignment.state)
                ).all()
            )
            checks.removed = states.get("removed", 0)
            if checks.removed != n:
                problems.append(f"assignments by state: {states}")
            if ldap_url is not None:
                checks.memberships = expiry_ldap.members_left(ldap_url)
            else:
                checks.memberships = (
                    session.scalar(select(func.count()).where(Membership.group_id == GROUP)) or 0
                )
            if checks.memberships:
                problems.append(f"{checks.memberships} memberships of the group left")
            runs = session.execute(
                select(Job.kind, Job.state, Job.attempts, func.count())
                .where(Job.kind != "grant")
                .group_by(Job.kind, Job.state, Job.attempts)
            ).all()
            for kind, state, attempts, count in runs:
                checks.jobs[kind] = checks.jobs.get(kind, 0) + count
                if (state, attempts) != ("done", 1):
                    problems.append(f"{count} {kind} jobs {state} after {attempts} attempt(s)")
            # Through slapd, one revoke job per assignment; policyd's own directory needs
            # none: the expiry's transaction ends the membership.
            revoking = n if ldap_url is not None else 0
            if checks.jobs.get("revoke", 0) != revoking:
                problems.append(f"{checks.jobs.get('revoke', 0)} revoke jobs, not {revoking}")
            revokes = Job.kind == "revoke"
            per_assignment = session.scalar(
                select(func.count(func.distinct(Job.assignment_id))).where(revokes)
            )
            if per_assignment != revoking:
                problems.append(f"revoke jobs cover {per_assignment} assignments, not {revoking}")
            removals = Counter(
                (before or {}).get("user_id")
                for before in session.scalars(
                    select(AuditRecord.before).where(
                        AuditRecord.action == "directory.member_removed"
                    )
                )
            )
            twice = sum(count - 1 for count in removals.values() if count > 1)
            if ldap_url is None and (len(removals) != n or twice):
                problems.append(
                    f"directory.member_removed audits: {len(removals)} users, {twice} duplicates"
                )
            for action in ("assignment.expired", "assignment.removed"):
                total, distinct = session.execute(
                    select(func.count(), func.count(func.distinct(AuditRecord.object_id))).where(
                        AuditRecord.action == action
                    )
                ).one()
                if total != n or distinct != n:
                    problems.append(f"{action} audits: {total} for {distinct} assignments")
            left = due(db, now)
            if left:
                problems.append(f"{left} assignments or jobs still due")
    finally:
        db.dispose()
    return checks


def calibrate(url: str) -> str:
    """This machine's speed right now: shared machines vary, so runs are compared with it."""
    db = Database(url)
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            started = time.perf_counter()
            for _ in range(500):
                connection.execute(text("SELECT 1"))
            round_trip = (time.perf_counter() - started) / 500
            server = ""
            if connection.dialect.name == "postgresql":
                # What the figures at a million rows depend on most: whether the indexes the
                # removals write fit in PostgreSQL's own buffers (the stock 128MB does not).
                settings = ("shared_buffers", "max_wal_size", "synchronous_commit")
                values = [connection.execute(text(f"SHOW {name}")).scalar() for name in settings]
                server = "; server " + ", ".join(
                    f"{name} {value}" for name, value in zip(settings, values, strict=True)
                )
    finally:
        db.dispose()
    started, total = time.perf_counter(), 0
    for i in range(1_000_000):
        total += i
    loop = time.perf_counter() - started
    return (
        f"SELECT 1 round trip {round_trip * 1e3:.3f} ms, 10^6-step Python loop {loop * 1e3:.0f} ms"
        + server
    )


def run(
    kind: str,
    url: str,
    n: int,
    workers: int,
    batch: int,
    timeout: float,
    profile: str | None,
    ldap: expiry_ldap.Slapd | None = None,
) -> Result:
    ldap_url = ldap.url if ldap is not None else None
    deadline = time.monotonic() + timeout
    result = Result(kind, workers, n, via="ldap" if ldap_url else "directory")
    expires_at = datetime.now(UTC).replace(microsecond=0)
    now = expires_at + GRACE
    log(f"{kind}: inserting {n:,} users, assignments, grant jobs and memberships")
    result.setup = populate(url, n, expires_at, deadline, ldap=ldap_url is not None)
    result.calibration = calibrate(url)
    log(f"{kind}: inserted in {result.setup:.1f} s; sweeping with {workers} worker(s)")

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers + 1)
    results: multiprocessing.Queue = context.Queue()
    processes = [
        context.Process(
            target=work,
            args=(i, url, now, batch, barrier, results, profile if i == 0 else None, ldap_url),
            name=f"expiry-worker-{i}",
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    reports: list[WorkerReport] = []
    try:
        # Broken: a worker failed to start (its report says why) or the time is up.
        with suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=max(1.0, deadline - time.monotonic()))
        start = time.time()
        slapd_before = expiry_ldap.cpu_seconds(ldap) if ldap is not None else 0.0
        while len(reports) < workers:
            try:
                reports.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                result.status = "timeout"
                log(f"{kind}: --timeout {timeout:g} s reached; stopping the workers")
                break
    finally:
        if ldap is not None:
            result.slapd_cpu = expiry_ldap.cpu_seconds(ldap) - slapd_before
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
    errors = [report.error for report in reports if report.error]
    for error in errors:
        log(f"{kind}: a worker failed:\n{error}")
    sweeps = [sweep for report in reports for sweep in report.sweeps]
    busy = [sweep for sweep in sweeps if sweep.expired or sweep.jobs]
    expired_by = max((sweep.expired_at for sweep in sweeps if sweep.expired), default=start)
    finished = max((sweep.ended for sweep in busy), default=start)
    revoked_by = max((at for report in reports for at in report.removed.values()), default=start)
    if result.status == "timeout":
        finished = time.time()
    result.expire, result.total = expired_by - start, finished - start
    result.revoke = max(0.0, revoked_by - start)
    # The sweep starts at T + GRACE: map that instant onto the wall clock.
    expiry_wall = start - GRACE.total_seconds()
    removed: Counter[str] = Counter()
    for report in sorted(reports, key=lambda report: report.index):
        expired = sum(sweep.expired for sweep in report.sweeps)
        jobs = sum(sweep.jobs for sweep in report.sweeps)
        result.shares.append((expired, jobs, report.cpu, report.backend_cpu))
        removed.update(report.removed.keys())
        result.latencies.extend(at - expiry_wall for at in report.removed.values())
    result.latencies.sort()
    result.checks = verify(url, n, now, ldap_url)
    repeated = sum(count - 1 for count in removed.values() if count > 1)
    if repeated:
        result.checks.problems.append(f"{repeated} assignments revoked by more than one worker")
    if errors:
        result.status = "error"
    elif result.status == "ok" and result.checks.problems:
        result.status = "FAILED"
    return result


# --- report ------------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))]


COLUMNS = (
    ("database", "<10"),
    ("via", "<9"),
    ("workers", ">7"),
    ("N", ">8"),
    ("expire s", ">8"),
    ("revoked s", ">9"),
    ("total s", ">8"),
    ("revoc/s", ">8"),
    ("p50 s", ">7"),
    ("p99 s", ">7"),
    ("max s", ">7"),
    ("CPU ms", ">6"),
    ("members left", ">12"),
    ("removed", ">8"),
    ("status", "<7"),
)


def cpu_per_removal(r: Result) -> str:
    """CPU milliseconds per assignment removed: the workers' and their PostgreSQL backends'
    (a measure the other load of a shared machine barely moves, unlike the wall clock)."""
    if not r.checks.removed or any(backend is None for *_, backend in r.shares):
        return "-"
    total = sum(cpu + (backend or 0.0) for _, _, cpu, backend in r.shares)
    return f"{total * 1000 / r.checks.removed:.2f}"


def print_table(results: list[Result]) -> None:
    print(" ".join(f"{name:{spec}}" for name, spec in COLUMNS))
    print(" ".join("-" * int(spec[1:]) for _, spec in COLUMNS))
    for r in results:
        rate = r.checks.removed / r.total if r.total > 0 else float("nan")
        cells = (
            r.database,
            r.via,
            r.workers,
            r.n,
            f"{r.expire:.1f}",
            f"{r.revoke:.1f}",
            f"{r.total:.1f}",
            f"{rate:.0f}",
            f"{quantile(r.latencies, 0.50):.2f}",
            f"{quantile(r.latencies, 0.99):.2f}",
            f"{quantile(r.latencies, 1.0):.2f}",
            cpu_per_removal(r),
            r.checks.memberships,
            r.checks.removed,
            r.status,
        )
        print(" ".join(f"{cell:{spec}}" for cell, (_, spec) in zip(cells, COLUMNS, strict=True)))


def print_notes(results: list[Result], batch: int) -> None:
    print()
    print(
        "setup: users, decisions, requests, active assignments expiring at T, their done grant "
        "jobs and the group memberships (in slapd with --target ldap) are bulk inserts, not the "
        "API: on PostgreSQL made by the server (INSERT ... SELECT over generate_series) and "
        "followed by VACUUM ANALYZE, on SQLite Core executemany"
    )
    for r in results:
        print(f"  {r.database}: {r.n:,} of each inserted in {r.setup:.1f} s")
    for r in results:
        print(f"machine before the {r.database} sweep: {r.calibration}")
    print(
        f"worker: Worker.sweep(now=T + {GRACE.total_seconds():g} s, batch={batch}) per process "
        "until nothing is due (expiry and jobs overlap on PostgreSQL); expire s: until the last "
        "expiry batch committed (assignments expiring and revoke jobs queued; through policyd's "
        "own directory, memberships ended and assignments removed); revoked s: until the last "
        "removal committed (all access removed); "
        "total s: until the last job of any kind ran; revoc/s = removed / total s; "
        "CPU ms: CPU time per removal, of the workers and their PostgreSQL backends (read "
        "from /proc, so only with the server on this host; - otherwise and on SQLite)"
    )
    for r in results:
        if r.slapd_cpu is not None and r.checks.removed:
            per = r.slapd_cpu * 1000 / r.checks.removed
            print(f"  {r.database}: slapd used {r.slapd_cpu:.1f} s of CPU ({per:.2f} ms a removal)")
    for r in results:
        ran = ", ".join(f"{kind} {count:,}" for kind, count in sorted(r.checks.jobs.items()))
        shares = "; ".join(
            f"worker {index}: expired {expired:,}, ran {jobs:,} jobs, {cpu:.1f} s CPU"
            + ("" if backend is None else f" + {backend:.1f} s of its PostgreSQL backends")
            for index, (expired, jobs, cpu, backend) in enumerate(r.shares)
        )
        print(f"  {r.database}, {r.workers} worker(s): jobs queued by the sweeps: {ran or 'none'}")
        print(f"  {r.database}, {r.workers} worker(s): {shares or 'no worker reported'}")
    print(
        "latency: expires_at to the commit of the assignment's `removed` (wall clock, the sweep "
        f"starting {GRACE.total_seconds():g} s after expires_at)"
    )
    print_targets(results)


def print_targets(results: list[Result]) -> None:
    """Each PostgreSQL run against its target (scaled to its N), and any failed check."""
    for r in results:
        if r.database == "postgresql" and r.status == "ok":
            goal_n, goal_seconds = TARGETS[r.via]
            met = r.total <= goal_seconds * r.n / goal_n
            print(
                f"target ({r.via}): {goal_n:,} in <= {goal_seconds:g} s on PostgreSQL "
                f"({goal_n / goal_seconds:.0f} revocations/s); {r.workers} worker(s) at "
                f"N={r.n:,}: {r.checks.removed / r.total:.0f}/s, {'met' if met else 'MISSED'}"
            )
    for r in results:
        for problem in r.checks.problems:
            print(f"check failed ({r.database}, {r.workers} worker(s)): {problem}")


def print_profile(path: str, top: int) -> None:
    for what, where in (("", path), (" (its periodic-tasks thread)", path + ".tasks")):
        if not os.path.exists(where):
            continue
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(where, stream=out).strip_dirs().sort_stats(order).print_stats(top)
            print(f"\nprofile of worker 0{what}, by {order}:")
            print(out.getvalue().split("\n", 4)[-1].rstrip())


def run_on_postgres(
    runs: Sequence[tuple[str, int]], workers: int = 2, postgres_url: str = DEFAULT_POSTGRES
) -> str:
    """Each (target, N) of `runs` on a throwaway PostgreSQL database with `workers` workers
    (`--target ldap`: a throwaway slapd), as the table and the targets' lines this command
    prints: what bench/scale.py shows for its expiry figures."""
    results = []
    for target, n in runs:
        with (
            fresh_database("postgresql", postgres_url, log) as url,
            slapd(target, n, False) as ldap,
        ):
            results.append(run("postgresql", url, n, workers, EXPIRY_BATCH, 1800.0, None, ldap))
    out = io.StringIO()
    with redirect_stdout(out):
        print_table(results)
        print_targets(results)
    return out.getvalue().rstrip()


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="assignments (default 100000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes on PostgreSQL (SQLite always runs one; default 1)",
    )
    parser.add_argument(
        "--target",
        choices=("directory", "ldap"),
        default="directory",
        help="where the access is removed: policyd's own directory (default) or a throwaway "
        "slapd's group through the ldap connector (slapd must be installed)",
    )
    parser.add_argument(
        "--slapd-index",
        action="store_true",
        help="with --target ldap: slapd indexes member (eq), as directories that look groups "
        "up by member do",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=EXPIRY_BATCH,
        help=f"expiry batch size (default {EXPIRY_BATCH}, the worker's)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per database run (default 1800)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POLICYD_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL server to create the throwaway database on "
        "[env: POLICYD_BENCH_POSTGRES_URL]",
    )
    parser.add_argument(
        "--profile", type=int, metavar="TOP", help="cProfile worker 0; print the TOP entries"
    )
    args = parser.parse_args(argv)
    for name in ("n", "workers", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


@contextmanager
def slapd(target: str, n: int, index: bool) -> Iterator[expiry_ldap.Slapd | None]:
    """For `--target ldap`, a running slapd whose group holds the N bench users."""
    if target != "ldap":
        yield None
        return
    with expiry_ldap.running_slapd(index) as server:
        started = time.perf_counter()
        expiry_ldap.fill_group(server, (f"bench-user-{i:07d}" for i in range(n)))
        took = time.perf_counter() - started
        log(f"ldap: slapd at {server.url}, {n:,} members added in {took:.1f} s")
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    results: list[Result] = []
    for kind in kinds:
        workers = args.workers if kind == "postgresql" else 1
        if workers != args.workers:
            log("sqlite: one worker (SQLite has no SKIP LOCKED; workers would collide)")
        with (
            fresh_database(kind, args.postgres_url, log) as url,
            tempfile.TemporaryDirectory() as tmp,
            slapd(args.target, args.n, args.slapd_index) as ldap,
        ):
            profile = str(Path(tmp) / "worker.prof") if args.profile else None
            try:
                result = run(kind, url, args.n, workers, args.batch, args.timeout, profile, ldap)
            except TimeoutError as err:
                log(f"{kind}: {err}")
                result = Result(kind, workers, args.n, args.target, status="timeout")
            results.append(result)
            if profile and args.profile and os.path.exists(profile):
                print(f"\n{kind}, N={args.n:,}:", end="")
                print_profile(profile, args.profile)
    print()
    print_table(results)
    print_notes(results, args.batch)
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
