"""HTTP load test: POST /v1/decisions under gunicorn against a bare Flask echo, same settings."""

from __future__ import annotations

import os
import sys

# Run as `python bench/http.py`, this file's folder heads sys.path and this module would shadow
# the standard library's `http` package for every import below; move that folder to the end.
sys.path.sort(
    key=lambda entry: (
        os.path.realpath(entry or os.curdir) == os.path.dirname(os.path.realpath(__file__))
    )
)

import argparse
import json
import math
import multiprocessing
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import server_timing
from throwaway import postgres_database

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
HOST = "127.0.0.1"
PATH = "/v1/decisions"
THROUGHPUT_TARGET = 0.70  # decisions req/s over bare req/s at saturation, at least
P99_TARGET = 1.5  # decisions p99 over bare p99 at the fixed rate, at most
CPU_TARGET = 1.3  # server CPU per decision over the echo's at the fixed rate, at most
LAG_TARGET = 5.0  # seconds the decision log may be behind at the fixed rate, at most
RATE_SHARE = 0.5  # the fixed rate: this share of the echo's saturated throughput
DECISIONS_URI = "policyd.api:create_app()"  # what gunicorn serves, each
BARE_URI = "bare_echo:app"

# Directory users: id -> PUT /v1/users/<id> body; groups: id -> member ids.
USERS: dict[str, dict[str, Any]] = {
    "alice": {"email": "alice@contoso.com", "department": "Engineering"},
    "bob": {"email": "bob@contoso.com", "department": "Engineering"},
    "carol": {"email": "carol@contoso.com", "department": "Sales", "manager_id": "grace"},
    "dave": {"email": "dave@example.org", "type": "guest"},
    "erin": {
        "email": "erin@contoso.com",
        "department": "Finance",
        "job_title": "AP Clerk",
        "manager_id": "grace",
    },
    "frank": {"email": "frank@fabrikam.com", "type": "guest"},
    "grace": {"email": "grace@contoso.com", "department": "Finance", "job_title": "Controller"},
}
GROUPS: dict[str, list[str]] = {
    "Group.ScopeA.Readers.Eligible": ["alice"],
    "Group.ScopeA.Approvers": ["grace"],
    "Sales.Ops": ["grace"],
    "Finance.Controllers": ["grace"],
}
# (package, subject id, expected outcome) from the example policies, sent round-robin.
MIX: tuple[tuple[str, str, str], ...] = (
    ("scope-a-readers", "alice", "auto_approve"),
    ("scope-a-readers", "bob", "require_approval"),
    ("sales-support", "carol", "require_approval"),
    ("sales-support", "dave", "deny"),
    ("payments-entry", "erin", "require_approval"),
    ("quarter-end-close", "erin", "require_approval"),
    ("merger-collaboration", "frank", "auto_approve"),
    ("merger-collaboration", "bob", "deny"),
)

BARE_APP = '''\
"""Bare Flask app: echoes the JSON body, the floor of any Flask JSON endpoint."""

from flask import Flask, jsonify, request

app = Flask("bare")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.post("/v1/decisions")
def echo():
    return jsonify(request.get_json())
'''


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- HTTP/1.1 client over a raw socket: cheap enough that the driver stays out of the way ------


class Connection:
    """One client's connection; kept alive unless the server closes it (gunicorn sync does)."""

    def __init__(self, port: int, timeout: float):
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.opened = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buffer = b""

    def request(self, message: bytes) -> tuple[int, bytes]:
        """Send one request message; the response status and body."""
        if self.sock is not None:
            try:
                return self._exchange(message)
            except (ConnectionError, _ClosedEarly):
                self.close()  # a kept-alive connection the server dropped: retry once, fresh
        return self._exchange(message)

    def _exchange(self, message: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.opened += 1
        self.sock.sendall(message)
        status, body, keep_alive = self._read_response()
        if not keep_alive:
            self.close()
        return status, body

    def _recv(self) -> bytes:
        assert self.sock is not None
        return self.sock.recv(65536)

    def _read_response(self) -> tuple[int, bytes, bool]:
        buffer = self.buffer
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            chunk = self._recv()
            if not chunk:
                if buffer:
                    raise ConnectionError("connection closed inside the response headers")
                raise _ClosedEarly
            buffer += chunk
        status_line, *header_lines = buffer[:end].decode("latin-1").split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        keep_alive = version == "HTTP/1.1"
        length: int | None = None
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection":
                keep_alive = value.strip().lower() != "close"
            elif name == "transfer-encoding":
                raise ValueError(f"unsupported transfer-encoding {value.strip()!r}")
        start = end + 4
        if length is None:  # body runs to the end of the connection
            while chunk := self._recv():
                buffer += chunk
            length, keep_alive = len(buffer) - start, False
        while len(buffer) - start < length:
            chunk = self._recv()
            if not chunk:
                raise ConnectionError("connection closed inside the response body")
            buffer += chunk
        self.buffer = buffer[start + length :]
        return int(status), buffer[start : start + length], keep_alive


class _ClosedEarly(Exception):
    """The server closed the connection before sending any byte of the response."""


def http_message(method: str, port: int, path: str, token: str = "", body: bytes = b"") -> bytes:
    headers = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    if body or method == "POST":
        headers += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body


# --- load processes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSpec:
    port: int
    messages: tuple[bytes, ...]
    quotas: tuple[int, ...]  # requests per client thread of this process
    seconds: float
    timeout: float
    # Fixed rate: each client sends every `interval` seconds on a schedule (None: as fast as it
    # can), and latency counts from the scheduled moment, so a late answer also delays what
    # should have been sent meanwhile in the numbers (no coordinated omission).
    interval: float | None = None
    clients: int = 1  # all clients of the run, to spread their schedules evenly


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)  # seconds, completed responses only
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # transport errors by type
    connections: int = 0
    finished: float = 0.0  # time.monotonic(), comparable across processes on one host


@dataclass
class ProcessResult:
    clients: list[ClientResult]
    started: float
    cpu: float  # CPU seconds this driver process spent while clients ran


def run_client(spec: LoadSpec, index: int, quota: int, deadline: float) -> ClientResult:
    result = ClientResult()
    connection = Connection(spec.port, spec.timeout)
    messages, count = spec.messages, len(spec.messages)
    sent = 0
    scheduled = time.perf_counter()
    if spec.interval is not None:
        scheduled += spec.interval * index / spec.clients
    while sent < quota and time.monotonic() < deadline:
        message = messages[(index + sent) % count]
        sent += 1
        began = time.perf_counter()
        if spec.interval is not None:
            if scheduled > began:
                time.sleep(scheduled - began)
            began = scheduled
            scheduled += spec.interval
        try:
            status, _ = connection.request(message)
        except (OSError, ValueError, _ClosedEarly) as err:
            result.failures[type(err).__name__] += 1
            connection.close()
            continue
        result.latencies.append(time.perf_counter() - began)
        result.statuses[status] += 1
    connection.close()
    result.connections = connection.opened
    result.finished = time.monotonic()
    return result


def drive(spec: LoadSpec, offset: int, barrier: Barrier, results: Any) -> None:
    """Entry point of one load process: its client threads, started together on the barrier."""
    clients = [ClientResult() for _ in spec.quotas]

    def target(slot: int, deadline: float) -> None:
        clients[slot] = run_client(spec, offset + slot, spec.quotas[slot], deadline)

    barrier.wait()
    started, cpu = time.monotonic(), time.process_time()
    threads = [
        threading.Thread(target=target, args=(slot, started + spec.seconds))
        for slot in range(len(spec.quotas))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(ProcessResult(clients, started, time.process_time() - cpu))


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# --- CPU accounting (Linux /proc; best effort) -------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its children processes (a gunicorn master and its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for each in [pid, *map(int, children)]:
        try:
            stat = Path(f"/proc/{each}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return math.nan
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --- one measured run --------------------------------------------------------------------------


@dataclass
class Stats:
    name: str
    requests: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int
    error_detail: dict[str, int]
    connections: int
    driver_cores: float
    driver_busiest: float  # the busiest load process's share of one core
    driver_us_per_request: float
    server_cores: float
    other_cores: float  # everything else on the machine meanwhile


def percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Run:
    """One driven run's raw figures, before they become `Stats` (alone or pooled)."""

    results: list[ProcessResult]
    server_cpu: float
    busy: float
    window: float


def measure(
    name: str, port: int, server_pid: int, messages: tuple[bytes, ...], **load: Any
) -> Stats:
    """One run of `drive_run` (same keyword arguments), as `Stats`."""
    return stats_of(name, [drive_run(port, server_pid, messages, **load)])


def drive_run(
    port: int,
    server_pid: int,
    messages: tuple[bytes, ...],
    *,
    requests: int,
    seconds: float,
    concurrency: int,
    processes: int,
    rate: float | None = None,
) -> Run:
    """Drive `concurrency` clients for `requests` or `seconds`; with `rate`, at that many
    requests per second in all (each client on a schedule) instead of as fast as they can."""
    context = multiprocessing.get_context("spawn")
    interval = concurrency / rate if rate else None
    processes = max(1, min(processes, concurrency))
    barrier = context.Barrier(processes + 1)
    queue = context.Queue()
    threads = split(concurrency, processes)
    quotas = split(requests, concurrency)
    workers, offset = [], 0
    for count in threads:
        spec = LoadSpec(
            port,
            messages,
            tuple(quotas[offset : offset + count]),
            seconds,
            60.0,
            interval,
            concurrency,
        )
        workers.append(context.Process(target=drive, args=(spec, offset, barrier, queue)))
        offset += count
    for worker in workers:
        worker.start()
    try:
        barrier.wait(timeout=60)
        server_cpu, busy, window = process_cpu(server_pid), machine_busy(), time.monotonic()
        results: list[ProcessResult] = [queue.get(timeout=seconds + 120) for _ in workers]
        server_cpu = process_cpu(server_pid) - server_cpu
        busy = machine_busy() - busy
        window = time.monotonic() - window
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
                worker.join()
    return Run(results, server_cpu, busy, window)


def stats_of(name: str, runs: Sequence[Run]) -> Stats:
    """The figures of one run, or of several runs of one workload pooled (their latencies
    together, their durations and CPU seconds summed)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    elapsed = server_cpu = busy = window = driver_cpu = busiest = 0.0
    connections = 0
    for run in runs:
        clients = [client for result in run.results for client in result.clients]
        started = min(result.started for result in run.results)
        run_elapsed = max(client.finished for client in clients) - started
        elapsed += run_elapsed
        for client in clients:
            latencies.extend(client.latencies)
            statuses.update(client.statuses)
            failures.update(client.failures)
            connections += client.connections
        driver_cpu += sum(result.cpu for result in run.results)
        busiest = max(busiest, *(result.cpu / run_elapsed for result in run.results))
        server_cpu += run.server_cpu
        busy += run.busy
        window += run.window
    latencies.sort()
    detail = {f"HTTP {code}": n for code, n in sorted(statuses.items()) if code != 200}
    detail.update(failures)
    done = len(latencies)
    return Stats(
        name=name,
        requests=done,
        seconds=elapsed,
        throughput=done / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        errors=sum(detail.values()),
        error_detail=detail,
        connections=connections,
        driver_cores=driver_cpu / elapsed,
        driver_busiest=busiest,
        driver_us_per_request=driver_cpu / max(done, 1) * 1e6,
        server_cores=server_cpu / window,
        other_cores=max(0.0, (busy - driver_cpu - server_cpu) / window),
    )


# --- database, data and servers ----------------------------------------------------------------


@contextmanager
def database(url: str | None, tmp: Path) -> Iterator[str]:
    """SQLite in `tmp`, or a fresh PostgreSQL database on the server of `url`, dropped after."""
    if url is None:
        yield f"sqlite:///{tmp / 'policyd.db'}"
        return
    with postgres_database(url, log) as fresh:
        yield fresh


def prepare(url: str, config: dict[str, str]) -> str:
    """Migrate, publish the example policies, add the directory; an admin API token."""
    from datetime import UTC, datetime

    from policyd.api import create_app
    from policyd.api.context import components
    from policyd.services.actor import SYSTEM
    from policyd.services.tokens import TokenService

    app = create_app(
        {
            **config,
            "POLICYD_DATABASE_URL": url,
            "POLICYD_POLICIES": str(POLICIES),
            "POLICYD_AUTO_UPGRADE": True,
        }
    )
    db = components(app).database
    try:
        with db.session() as session:
            _, token = TokenService(session).create(SYSTEM, "bench", "admin", now=datetime.now(UTC))
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        # Managers first: a user's manager must be in the directory already.
        ordered = sorted(USERS.items(), key=lambda item: "manager_id" in item[1])
        calls: list[tuple[str, dict[str, Any] | None]] = [
            (f"/v1/users/{user_id}", body) for user_id, body in ordered
        ]
        for group_id, members in GROUPS.items():
            calls.append((f"/v1/groups/{group_id}", {}))
            calls += [(f"/v1/groups/{group_id}/members/{member}", None) for member in members]
        for path, body in calls:
            response = client.put(path, headers=headers, json=body)
            if response.status_code not in (200, 204):
                raise SystemExit(f"setup PUT {path}: HTTP {response.status_code} {response.text}")
    finally:
        components(app).decision_log.close()
        components(app).runtime.close()
        db.dispose()
    return token


def count_logged(url: str, config: dict[str, str]) -> int:
    """Entries in the decision log once what the stopped servers spooled is drained (the
    drainer may have fallen behind under the load, or there was none)."""
    from sqlalchemy import func, select

    from policyd.services.decision_log import Drainer
    from policyd.store import Database
    from policyd.store.models import DecisionRecord

    db = Database(url)
    try:
        Drainer(db.engine, config["POLICYD_SPOOL_DIR"]).drain()
        with db.session() as session:
            return session.scalar(select(func.count()).select_from(DecisionRecord)) or 0
    finally:
        db.dispose()


def count_rows(url: str) -> int:
    """Entries in the decision log now, while the servers run."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(text("SELECT count(*) FROM decisions")) or 0
    finally:
        engine.dispose()


def answered(stats: Stats) -> int:
    """Responses with status 200."""
    refused = sum(n for what, n in stats.error_detail.items() if what.startswith("HTTP "))
    return stats.requests - refused


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(
    stack: ExitStack,
    name: str,
    app: str,
    tmp: Path,
    env: dict[str, str],
    workers: int,
    extra: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    logfile = tmp / f"{name}.log"
    command = [sys.executable, "-m", "gunicorn", *extra, "--bind", f"{HOST}:{port}"]
    command += ["--workers", str(workers), "--worker-class", "sync", "--timeout", "60"]
    command += ["--log-level", "warning", "--chdir", str(tmp), app]
    with logfile.open("wb") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    stack.callback(stop_server, server)
    return server, port, logfile


def start_drainer(
    stack: ExitStack, how: str, tmp: Path, env: dict[str, str]
) -> subprocess.Popen[bytes] | None:
    """`policyd decision-log drain` as a deployment runs it beside the servers: with `idle`,
    in Linux's idle scheduling class, as the systemd unit in docs/storage.md does (it gets a
    CPU only when no request needs one); with `normal`, at the servers' priority."""
    if how == "none":
        return None
    command = [sys.executable, "-c", "from policyd.cli import main; main(prog_name='policyd')"]
    command += ["decision-log", "drain"]
    with (tmp / "drainer.log").open("wb") as output:
        drainer = subprocess.Popen(
            command,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    stack.callback(stop_server, drainer)
    if how == "idle":  # its one thread; started a moment ago, it has done nothing yet
        os.sched_setscheduler(drainer.pid, os.SCHED_IDLE, os.sched_param(0))
    return drainer


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def wait_ready(server: subprocess.Popen[bytes], port: int, logfile: Path) -> None:
    deadline = time.monotonic() + 60
    message = http_message("GET", port, "/healthz")
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}:\n{logfile.read_text()}")
        connection = Connection(port, 5.0)
        try:
            if connection.request(message)[0] == 200:
                return
        except (OSError, ValueError, _ClosedEarly):
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise SystemExit(f"gunicorn on port {port} not ready after 60 s:\n{logfile.read_text()}")


def preflight(
    decisions_port: int, bare_port: int, token: str, bodies: list[bytes], *, calibrate: bool
) -> None:
    """One request per body to each server: decisions answer 200 as expected, bare echoes
    (with `calibrate`, both are the echo)."""
    if calibrate:
        for port in (decisions_port, bare_port):
            for body in bodies:
                _check_echo(port, token, body)
        return
    for (package, subject, expected), body in zip(MIX, bodies, strict=True):
        connection = Connection(decisions_port, 30.0)
        status, payload = connection.request(
            http_message("POST", decisions_port, PATH, token, body)
        )
        connection.close()
        if status != 200:
            raise SystemExit(f"POST {PATH} {body.decode()}: HTTP {status} {payload.decode()}")
        outcome = json.loads(payload).get("decision")
        if outcome != expected:
            log(f"note: {package} for {subject} decided {outcome}, expected {expected}")
        _check_echo(bare_port, token, body)


def _check_echo(port: int, token: str, body: bytes) -> None:
    connection = Connection(port, 30.0)
    status, payload = connection.request(http_message("POST", port, PATH, token, body))
    connection.close()
    if status != 200 or json.loads(payload) != json.loads(body):
        raise SystemExit(f"bare echo of {body.decode()}: HTTP {status} {payload.decode()}")


# --- report ------------------------------------------------------------------------------------


class LagSampler:
    """Reads how far the decision log is behind twice a second, keeping the worst, while a run
    lasts. It reads the spool folder and the database from this process, as /readyz does,
    rather than asking the decisions server: a /readyz answer costs a worker about 2 ms of CPU,
    which the bare echo would not be paying during the comparison."""

    def __init__(self, url: str, spool: str):
        from policyd.services.decision_log.drainer import Drainer
        from policyd.store import Database

        self._database = Database(url)
        self._drainer = Drainer(self._database.engine, spool)
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._database.dispose()

    def _run(self) -> None:
        from datetime import UTC, datetime

        while not self._stop.wait(0.5):
            lag = self._drainer.lag()
            self.worst = max(self.worst, lag.seconds(datetime.now(UTC)))


def server_us_per_request(stats: Stats) -> float:
    """Server CPU per answered request: steadier than req/s when other jobs share the cores."""
    return stats.server_cores / stats.throughput * 1e6 if stats.throughput else math.nan


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def report(
    bare: Stats,
    decisions: Stats,
    paced: tuple[Stats, Stats, float, float],
    settings: dict[str, Any],
    as_json: bool,
) -> dict[str, Any]:
    """Print (or dump) the table; `paced` is the fixed-rate run: bare, decisions, the rate and
    the decision log's largest lag meanwhile, in seconds."""
    paced_bare, paced_decisions, rate, lag = paced
    throughput_ratio = ratio(decisions.throughput, bare.throughput)
    pooled_p99_ratio = ratio(paced_decisions.p99_ms, paced_bare.p99_ms)
    rounds = settings.get("paced_round_p99_ratios", [])
    # The verdict takes the median round: a stall of the machine (another process waking up
    # for tens of milliseconds) lands in one endpoint's turn and sets that turn's p99; pooled,
    # the endpoint that drew more of them loses, whatever its own latency (the bare echo's
    # pooled p99 has gone from 3.9 to 14.1 ms between two runs of the same code).
    p99_ratio = statistics.median(rounds) if rounds else pooled_p99_ratio
    cpu_ratio = ratio(server_us_per_request(paced_decisions), server_us_per_request(paced_bare))
    driver_limited = max(bare.driver_busiest, decisions.driver_busiest) > 0.85
    summary = {
        "settings": settings,
        "bare": asdict(bare),
        "decisions": asdict(decisions),
        "fixed_rate": {
            "rate": rate,
            "bare": asdict(paced_bare),
            "decisions": asdict(paced_decisions),
            "decision_log_max_lag_s": lag,
        },
        "throughput_ratio": throughput_ratio,
        "throughput_target": THROUGHPUT_TARGET,
        "throughput_pass": throughput_ratio >= THROUGHPUT_TARGET,
        "saturated_p99_ratio": ratio(decisions.p99_ms, bare.p99_ms),
        "p99_ratio": p99_ratio,
        "pooled_p99_ratio": pooled_p99_ratio,
        "p99_target": P99_TARGET,
        "p99_pass": p99_ratio <= P99_TARGET,
        "cpu_ratio": cpu_ratio,
        "cpu_target": CPU_TARGET,
        "cpu_pass": cpu_ratio <= CPU_TARGET,
        "lag_target": LAG_TARGET,
        "lag_pass": lag <= LAG_TARGET,
        "driver_limited": driver_limited,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return summary
    print(
        f"gunicorn {settings['workers']} sync workers, {settings['database']}; "
        f"{settings['concurrency']} clients in {settings['processes']} load processes; "
        f"{os.cpu_count()} cores; decision-log drainer {settings['drainer']}"
        + "".join(f"; {setting}" for setting in settings.get("set", ()))
    )
    print()
    print(
        f"{'load':<11} {'workload':<10} {'requests':>8} {'seconds':>7} {'req/s':>8} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'us CPU/req':>10} {'errors':>6}"
    )
    rows = [("saturation", bare), ("saturation", decisions)]
    rows += [(f"{rate:.0f}/s", paced_bare), (f"{rate:.0f}/s", paced_decisions)]
    for load, stats in rows:
        print(
            f"{load:<11} {stats.name:<10} {stats.requests:>8} {stats.seconds:>7.1f} "
            f"{stats.throughput:>8.1f} {stats.p50_ms:>7.1f} {stats.p99_ms:>7.1f} "
            f"{server_us_per_request(stats):>10.0f} {stats.errors:>6}"
        )
    print()
    print(
        f"fixed rate {rate:.0f} req/s = {RATE_SHARE:.0%} of the echo's saturated throughput, "
        "latency counted from each request's scheduled moment"
    )
    if len(rounds) > 1:
        print(
            f"{len(rounds)} alternating rounds; p99 ratio per round: "
            + " ".join(f"{each:.2f}" for each in rounds)
            + f"; of the latencies pooled over the rounds (the table's): {pooled_p99_ratio:.2f}"
        )
    print(
        f"throughput at saturation, decisions/bare {throughput_ratio:5.2f}  "
        f"target >= {THROUGHPUT_TARGET:.2f}  {verdict(summary['throughput_pass'])}"
    )
    print(
        f"p99 at the fixed rate, decisions/bare    {p99_ratio:5.2f}  target <= {P99_TARGET:.2f}  "
        f"{verdict(summary['p99_pass'])}" + ("  (the median round)" if rounds else "")
    )
    print(
        f"server CPU per request, decisions/bare   {cpu_ratio:5.2f}  target <= {CPU_TARGET:.2f}  "
        f"{verdict(summary['cpu_pass'])}"
    )
    print(
        f"decision log behind at most, fixed rate  {lag:5.1f} s  target <= {LAG_TARGET:.0f} s  "
        f"{verdict(summary['lag_pass'])}"
    )
    print(
        f"(p99 at saturation, decisions/bare {summary['saturated_p99_ratio']:.2f}: there the "
        "load driver shares the cores with the servers)"
    )
    print()
    for stats in (bare, decisions):
        print(
            f"{stats.name:<10} CPU cores: servers {stats.server_cores:.2f} "
            f"({server_us_per_request(stats):.0f} us/request), driver "
            f"{stats.driver_cores:.2f} ({stats.driver_us_per_request:.0f} us/request, busiest "
            f"load process {stats.driver_busiest:.0%} of a core), other {stats.other_cores:.2f}; "
            f"{stats.connections} connections"
        )
        if stats.error_detail:
            print(f"{'':<10} errors: {stats.error_detail}")
    print(
        "driver: "
        + (
            "a load process was near a full core: the driver may be the limit"
            if driver_limited
            else "no load process near a full core: not the limit (it still shares the cores)"
        )
    )
    if bare.connections >= bare.requests:
        print("note: gunicorn sync workers close every connection, so each request reconnects")
    logged = settings["logged"]
    if settings.get("calibrate"):
        print("calibration: the bare echo served in both places; no decision was made or logged")
        return summary
    print(
        f"decision log: {logged['answered']} decisions answered 200 (warm-up included); "
        f"stored when the load stopped {logged['stored_at_end']}, a second later "
        f"{logged['stored_a_second_later']}, after the servers stopped {logged['stored']}"
    )
    return summary


def paced_rounds(
    args: argparse.Namespace,
    rate: float,
    token: str,
    bodies: list[bytes],
    servers: dict[str, tuple[subprocess.Popen[bytes], int]],
    log_at: tuple[str, str],
) -> tuple[dict[str, Stats], list[float], float, dict[str, list[tuple[float, float]]]]:
    """The fixed-rate comparison: `--paced-rounds` rounds, each driving both servers in turn
    (bare first in even rounds, decisions first in odd ones) for an equal share of
    `--paced-seconds`, so that both endpoints meet the machine's changing background alike;
    each endpoint's latencies are pooled over the rounds. Returns the pooled figures, each
    round's p99 ratio (decisions/bare; their median is the p99 verdict), the decision
    log's largest lag during the decisions runs (`log_at`: the database URL and the spool
    folder) and when each endpoint was driven (time.perf_counter, for --server-timing)."""
    seconds = args.paced_seconds / args.paced_rounds
    runs: dict[str, list[Run]] = {"bare": [], "decisions": []}
    windows: dict[str, list[tuple[float, float]]] = {"bare": [], "decisions": []}
    lag = 0.0
    for round_number in range(args.paced_rounds):
        order = ["bare", "decisions"] if round_number % 2 == 0 else ["decisions", "bare"]
        for name in order:
            server, port = servers[name]
            messages = tuple(http_message("POST", port, PATH, token, body) for body in bodies)
            log(
                f"{name}: {rate:.0f} requests/s for {seconds:g} s "
                f"(round {round_number + 1} of {args.paced_rounds})"
            )
            with LagSampler(*log_at) as sampler:
                began = time.perf_counter()
                runs[name].append(
                    drive_run(
                        port,
                        server.pid,
                        messages,
                        requests=10**9,
                        seconds=seconds,
                        concurrency=args.concurrency,
                        processes=args.processes,
                        rate=rate,
                    )
                )
                windows[name].append((began, time.perf_counter()))
            if name == "decisions":
                lag = max(lag, sampler.worst)
    round_ratios = [
        ratio(stats_of("decisions", [d]).p99_ms, stats_of("bare", [b]).p99_ms)
        for b, d in zip(runs["bare"], runs["decisions"], strict=True)
    ]
    pooled = {name: stats_of(name, each) for name, each in runs.items()}
    return pooled, round_ratios, lag, windows


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", help="PostgreSQL server URL (default: temp SQLite)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--concurrency", type=int, default=32, help="clients (default 32)")
    parser.add_argument("--requests", type=int, default=60_000, help="per workload cap")
    parser.add_argument("--seconds", type=float, default=30.0, help="per workload cap")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per server")
    parser.add_argument(
        "--processes",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="load processes the clients are spread over (default: cores, at most 4)",
    )
    parser.add_argument(
        "--drainer",
        choices=("idle", "normal", "none"),
        default="idle",
        help="the `policyd decision-log drain` sidecar beside the servers: at idle CPU priority"
        " (default, as docs/storage.md's systemd unit), at normal priority, or none (the log is"
        " drained once the servers stopped)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="POLICYD_NAME=VALUE",
        help="a setting of the decisions server, e.g. POLICYD_DECISION_LOG_INTERVAL=1 (repeatable;"
        " the bench's own POLICYD_* environment is not passed on)",
    )
    parser.add_argument(
        "--paced-rounds",
        type=int,
        default=20,
        help="rounds the fixed-rate runs are split into, alternating which server goes first;"
        " the p99 verdict takes the median of the rounds' ratios, the table pools each"
        " endpoint's latencies over them (default 20: one run's median of 10 strayed by 0.2"
        " or more between runs of the same code)",
    )
    parser.add_argument(
        "--paced-seconds",
        type=float,
        default=80.0,
        help="seconds each endpoint is driven at the fixed rate, over all rounds (default 80)",
    )
    parser.add_argument(
        "--server-timing",
        action="store_true",
        help="time each request inside the workers (wall, CPU, run-queue wait; gunicorn hooks,"
        " bench/server_timing.py) and print where the fixed-rate runs' time went",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="an A/A run: the bare echo in the decisions server's place too (same drainer and"
        " lag sampling), so the ratios show how far the bench's own verdict strays when the two"
        " endpoints do not differ",
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    if args.calibrate and args.server_timing:
        parser.error("--calibrate and --server-timing: both servers would note under one name")
    for setting in args.set:
        name, equals, _ = setting.partition("=")
        if not equals or not name.startswith("POLICYD_"):
            parser.error(f"--set {setting!r}: expected POLICYD_NAME=VALUE")
    for name in ("workers", "concurrency", "requests", "processes", "paced_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="policyd-bench-")))
        url = stack.enter_context(database(args.database_url, tmp))
        config = {"POLICYD_SPOOL_DIR": str(tmp / "spool")} | dict(
            setting.partition("=")[::2] for setting in args.set
        )
        log("preparing the database (migrate, publish policies, token, directory)")
        token = prepare(url, config)
        (tmp / "bare_echo.py").write_text(BARE_APP)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYD_")}
        real_env = env | config | {"POLICYD_DATABASE_URL": url, "POLICYD_POLICIES": str(POLICIES)}
        hooks: list[str] = []
        timing = tmp / "server-timing"
        if args.server_timing:
            if not server_timing.available():
                raise SystemExit("--server-timing needs Linux's /proc/<pid>/task/<tid>/schedstat")
            hooks, hook_env = server_timing.prepare(timing)
            env |= hook_env
            real_env |= hook_env
        decisions_uri = BARE_URI if args.calibrate else DECISIONS_URI
        real, real_port, real_log = start_server(
            stack,
            "decisions",
            decisions_uri,
            tmp,
            env if args.calibrate else real_env,
            args.workers,
            hooks,
        )
        bare, bare_port, bare_log = start_server(
            stack, "bare", BARE_URI, tmp, env, args.workers, hooks
        )
        start_drainer(stack, args.drainer, tmp, real_env)
        wait_ready(real, real_port, real_log)
        wait_ready(bare, bare_port, bare_log)
        bodies = [
            json.dumps({"package": package, "subject": {"id": subject}}).encode()
            for package, subject, _ in MIX
        ]
        preflight(real_port, bare_port, token, bodies, calibrate=args.calibrate)
        log(f"servers ready on ports {real_port} (decisions) and {bare_port} (bare)")

        results: dict[str, Stats] = {}
        decided = len(bodies)  # the preflight's
        for name, server, port in (("bare", bare, bare_port), ("decisions", real, real_port)):
            messages = tuple(http_message("POST", port, PATH, token, body) for body in bodies)
            common = {"concurrency": args.concurrency, "processes": args.processes}
            log(f"{name}: warm-up {args.warmup:g} s")
            warmup = measure(
                name, port, server.pid, messages, requests=10**9, seconds=args.warmup, **common
            )
            if name == "decisions":
                decided += answered(warmup)
            log(f"{name}: measuring ({args.requests} requests or {args.seconds:g} s)")
            results[name] = measure(
                name,
                port,
                server.pid,
                messages,
                requests=args.requests,
                seconds=args.seconds,
                **common,
            )
        decided += answered(results["decisions"])
        rate = RATE_SHARE * results["bare"].throughput
        servers = {"bare": (bare, bare_port), "decisions": (real, real_port)}
        paced, round_ratios, lag, windows = paced_rounds(
            args, rate, token, bodies, servers, (url, config["POLICYD_SPOOL_DIR"])
        )
        decided += answered(paced["decisions"])
        at_end = count_rows(url)  # how far the storing kept up with the load
        time.sleep(1.0)
        a_second_later = count_rows(url)
        stop_server(real)  # what the drainer has not stored yet is drained below
        stored = count_logged(url, config)
        settings = {
            "calibrate": args.calibrate,
            "workers": args.workers,
            "database": "postgresql" if args.database_url else "sqlite",
            "drainer": args.drainer,
            "set": args.set,
            "logged": {
                "answered": decided,
                "stored_at_end": at_end,
                "stored_a_second_later": a_second_later,
                "stored": stored,
            },
            "concurrency": args.concurrency,
            "processes": min(args.processes, args.concurrency),
            "requests": args.requests,
            "seconds": args.seconds,
            "warmup": args.warmup,
        }
        inside: dict[str, dict[str, float]] = {}
        if args.server_timing:
            stop_server(bare)  # the hooks write what they noted when a worker stops
            inside = {
                name: server_timing.summary(
                    server_timing.within(server_timing.read(timing, app), windows[name])
                )
                for name, app in (("bare", BARE_URI), ("decisions", DECISIONS_URI))
            }
            settings["server_timing"] = inside  # in the one JSON document, with --json
        report(
            results["bare"],
            results["decisions"],
            (paced["bare"], paced["decisions"], rate, lag),
            settings | {"paced_round_p99_ratios": round_ratios},
            args.json,
        )
        if inside and not args.json:
            print()
            print(server_timing.table(inside))
        failed = results["decisions"].errors + results["bare"].errors
        if failed:
            log(f"FAILED: {failed} requests without a 200 response")
            return 1
        if stored < decided and not args.calibrate:
            log(f"FAILED: {decided - stored} answered decisions missing from the log")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
