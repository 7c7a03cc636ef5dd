"""Preload before fork: gunicorn's memory and start-up with the app loaded per worker and
loaded once in the master (policyd.api.preload), on a bundle of many packages.

    python bench/preload.py                    # 1,000 packages, 2 workers
    python bench/preload.py --packages 10000 --workers 4

The bundle is bench/scale.py's (template-made scopes beside the example policies), published
into a SQLite database. Each mode starts gunicorn afresh and waits until every worker holds
the active version; RSS counts a page once per process that maps it, PSS shares it out among
the processes that share it, so the PSS of all processes is what the host pays.
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/preload.py`, this file's folder heads sys.path and its neighbour
# http.py would shadow the standard library's `http` (urllib imports it): move it to the end.
sys.path.sort(
    key=lambda entry: (
        os.path.realpath(entry or os.curdir) == os.path.dirname(os.path.realpath(__file__))
    )
)

import argparse
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import scale

MODES = {"app per worker": (), "preloaded": ("-c", "python:policyd.api.preload")}
READY = {
    "app per worker": re.compile(r"policy version \w+ loaded in"),
    "preloaded": re.compile(r"serves policy version \w+ as loaded before the fork"),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process, in MB (Linux)."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    rss = int(re.search(r"^Rss:\s+(\d+) kB", rollup, re.MULTILINE)[1]) / 1024
    pss = int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)[1]) / 1024
    return rss, pss


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def start(mode: str, url: str, workers: int, work: Path) -> dict[str, object]:
    """Run gunicorn in `mode` until every worker holds the version; its figures."""
    port, log = free_port(), work / f"gunicorn-{len(os.listdir(work))}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYD_")} | {
        "POLICYD_DATABASE_URL": url,
        "POLICYD_SPOOL_DIR": str(work / "spool"),
    }
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", str(workers), "--timeout", "600", *MODES[mode]]
    started = time.perf_counter()
    with log.open("w") as output:
        server = subprocess.Popen(
            [*command, "policyd.api:create_app()"], env=env, stdout=output, stderr=output
        )
    try:
        while len(READY[mode].findall(log.read_text())) < workers:
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{log.read_text()}")
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60):
            ready = time.perf_counter() - started
        time.sleep(1.0)  # let the workers settle (their threads start)
        pids = children(server.pid)
        return {
            "mode": mode,
            "ready": ready,
            "master": memory_mb(server.pid),
            "workers": [memory_mb(pid) for pid in pids],
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="policyd-bench-preload-") as tmp:
        work = Path(tmp)
        scale.write_bundle(work / "bundle", args.packages)
        url = f"sqlite:///{work / 'preload.db'}"
        published = scale.child("--measure", str(work / "bundle"), url)
        rows = [start(mode, url, args.workers, work) for mode in MODES]
    packages, rules = published["packages"], published["rules"]
    print(f"\n{packages:,} packages, {rules:,} rules; {args.workers} workers")
    header = f"{'mode':<15} {'ready s':>7} {'master RSS/PSS MB':>17} {'worker RSS MB':>14} "
    header += f"{'worker PSS MB':>14} {'all PSS MB':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        master, workers = row["master"], row["workers"]
        total = master[1] + sum(pss for _, pss in workers)
        print(
            f"{row['mode']:<15} {row['ready']:>7.1f} {master[0]:>8.0f}/{master[1]:<8.0f} "
            f"{'/'.join(f'{rss:.0f}' for rss, _ in workers):>14} "
            f"{'/'.join(f'{pss:.0f}' for _, pss in workers):>14} {total:>10.0f}"
        )
    print(
        "\nready s: from starting gunicorn until every worker holds the active version; RSS "
        "counts shared pages in every process, PSS divides them among the sharers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
