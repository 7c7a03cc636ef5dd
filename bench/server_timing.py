"""bench/http.py --server-timing: each request's time inside the gunicorn workers.

Hooks in the workers (a gunicorn config file) note for every request, from gunicorn's
`pre_request` to its `post_request` (the app, the writing of its answer, and any work the app
deferred until the answer was sent, which the client does not wait for): the wall time, the
worker's CPU time and its wait in the run queue (from /proc/self/task/<tid>/schedstat, Linux).
The bench keeps the requests of the fixed-rate runs by their moment (time.perf_counter is the
same clock in every process here) and prints, per endpoint, where the time went. This is how
the decisions' tail was traced to reads of lapsed caches (README, bench/http.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

FOLDER_VARIABLE = "BENCH_SERVER_TIMING_DIR"
HEAVY_CPU_US = 800.0  # a request this CPU-heavy is counted apart
SLOW_WALL_US = 1000.0

HOOKS = '''\
"""gunicorn hooks of bench/http.py --server-timing (written by bench/server_timing.py)."""
import os
import time

_records = []
_schedstat = None


def _now():
    # The thread's CPU time as the kernel counts it now (schedstat's first field moves only
    # at scheduler events), and the ns it has waited in the run queue (schedstat).
    os.lseek(_schedstat, 0, 0)
    return time.thread_time_ns(), int(os.read(_schedstat, 128).split()[1])


def post_worker_init(worker):
    global _schedstat
    _schedstat = os.open(f"/proc/self/task/{os.getpid()}/schedstat", os.O_RDONLY)


def pre_request(worker, req):
    req.bench_started = (_now(), time.perf_counter())


def post_request(worker, req, environ, resp):
    ended = time.perf_counter()
    cpu, waited = _now()
    (cpu0, waited0), started = req.bench_started
    _records.append((ended, ended - started, (cpu - cpu0) / 1e9, (waited - waited0) / 1e9))


def worker_exit(server, worker):
    folder = os.environ["BENCH_SERVER_TIMING_DIR"]
    path = os.path.join(folder, f"{server.app.app_uri}.{os.getpid()}.txt")
    with open(path, "w") as out:
        out.writelines(f"{a:.6f} {b:.7f} {c:.7f} {d:.7f}\\n" for a, b, c, d in _records)
'''

Record = tuple[float, float, float, float]  # ended (perf_counter s), wall, cpu, run-queue wait (s)
Window = tuple[float, float]  # perf_counter seconds


def prepare(folder: Path) -> tuple[list[str], dict[str, str]]:
    """The gunicorn arguments and environment that install the hooks, writing into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "hooks.py"
    config.write_text(HOOKS)
    return ["--config", str(config)], {FOLDER_VARIABLE: str(folder)}


def read(folder: Path, app: str) -> list[Record]:
    """The records every worker of `app` wrote when it stopped."""
    records: list[Record] = []
    for path in folder.glob(f"{app}.*.txt"):
        for line in path.read_text().splitlines():
            ended, wall, cpu, waited = map(float, line.split())
            records.append((ended, wall, cpu, waited))
    return records


def within(records: Iterable[Record], windows: Sequence[Window]) -> list[Record]:
    return [r for r in records if any(start <= r[0] <= end for start, end in windows)]


def _pick(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(records: Sequence[Record]) -> dict[str, float]:
    walls = sorted(r[1] * 1e6 for r in records)
    cpus = sorted(r[2] * 1e6 for r in records)
    waits = sorted(r[3] * 1e6 for r in records)
    figures: dict[str, float] = {"requests": len(records)}
    for name, ordered in (("wall", walls), ("cpu", cpus), ("queue", waits)):
        for q in (0.5, 0.99, 0.999):
            figures[f"{name}_p{q * 100:g}_us"] = _pick(ordered, q)
    figures["wall_over_1ms"] = sum(1 for w in walls if w > SLOW_WALL_US)
    figures["cpu_over_800us"] = sum(1 for c in cpus if c > HEAVY_CPU_US)
    return figures


def table(by_endpoint: dict[str, dict[str, float]]) -> str:
    """The per-endpoint figures as printed lines."""
    lines = [
        "inside the workers, fixed-rate runs (gunicorn pre_request to post_request), us:",
        f"{'workload':10} {'requests':>8} {'wall p50':>9} {'p99':>6} {'p99.9':>6} "
        f"{'cpu p50':>8} {'p99':>6} {'p99.9':>6} {'queue p99':>9} {'>1ms wall':>9} "
        f"{'>800us cpu':>10}",
    ]
    for name, f in by_endpoint.items():
        lines.append(
            f"{name:10} {f['requests']:8.0f} {f['wall_p50_us']:9.0f} {f['wall_p99_us']:6.0f} "
            f"{f['wall_p99.9_us']:6.0f} {f['cpu_p50_us']:8.0f} {f['cpu_p99_us']:6.0f} "
            f"{f['cpu_p99.9_us']:6.0f} {f['queue_p99_us']:9.0f} {f['wall_over_1ms']:9.0f} "
            f"{f['cpu_over_800us']:10.0f}"
        )
    return "\n".join(lines)


def available() -> bool:
    """Whether this machine exposes per-thread scheduler statistics."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/schedstat")
