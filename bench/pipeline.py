"""Instructions or CPU µs per request, in process: POST /v1/decisions and a bare Flask echo.

Each app answers the requests of bench/http.py (its MIX, an admin token) straight through its
WSGI callable, no server, no sockets: the count is the app's own work and repeatable on a
loaded machine. Each app runs twice under callgrind, with `--warm` requests and with `--warm`
plus `--requests`; the difference over `--requests` is the cost of one request, start-up and
first-call costs cancelled. `--src` measures another checkout's `src` (for example main's,
unpacked with `git archive`) with the same harness; given more than once, each in turn.

With `--cpu`, no valgrind: one process per checkout builds both apps, answers `--warm`
requests with each, then `--rounds` rounds of `--requests` requests of the echo and then of
the decisions, and reports CPU µs per request (time.process_time: every thread of the
process, as a server's CPU counts it), median and minimum over the rounds, and the median of
each round's decisions/echo ratio. `--passes` such processes run per checkout, alternating
the checkouts, so that each meets the machine's changing load alike. `--profile FILE` also
writes cProfile stats of the decisions (FILE.<n>, n: the checkout's position).

    python bench/pipeline.py [--requests 400] [--warm 100] [--src DIR ...]
    python bench/pipeline.py --cpu [--requests 400] [--rounds 5] [--passes 2] [--src DIR ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Run as `python bench/pipeline.py`, this folder heads sys.path and its http.py would shadow
# the standard library's `http` package: move the folder to the end.
sys.path.sort(key=lambda entry: Path(entry or os.curdir).resolve() == HERE)
APPS = ("echo", "decisions")


def bench_http() -> Any:
    """bench/http.py as a module (its name would shadow the standard library's `http`)."""
    spec = importlib.util.spec_from_file_location("bench_http", HERE / "http.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    sys.path.insert(0, str(HERE))  # its `throwaway` import
    spec.loader.exec_module(module)
    return module


def load_app(app_name: str) -> Any:
    """The WSGI app named `app_name`, built as its server builds it (in this process)."""
    if app_name == "echo":
        sys.path.insert(0, os.environ["BENCH_ECHO_DIR"])
        from bare_echo import app  # type: ignore[import-not-found]

        return app
    from policyd.api import create_app

    return create_app()


def close_app(app_name: str, app: Any) -> None:
    if app_name == "decisions":
        from policyd.api.context import components

        components(app).decision_log.close()
        components(app).runtime.close()


def mix_requests(token: str) -> list[tuple[dict[str, Any], bytes]]:
    """(WSGI environ, body) of each request of the MIX, as bench/http.py sends them."""
    from werkzeug.test import EnvironBuilder

    requests = []
    for package, subject in json.loads(os.environ["BENCH_MIX"]):
        body = json.dumps({"package": package, "subject": {"id": subject}}).encode()
        builder = EnvironBuilder(
            path="/v1/decisions",
            method="POST",
            headers={"Authorization": f"Bearer {token}"},
            data=body,
            content_type="application/json",
        )
        requests.append((builder.get_environ(), body))
    return requests


def answer(app: Any, requests: list[tuple[dict[str, Any], bytes]], count: int) -> list[str]:
    """Have `app` answer `count` requests, round-robin over `requests`; their statuses."""
    statuses: list[str] = []

    def start_response(status: str, _headers: list[Any], _exc_info: Any = None) -> None:
        statuses.append(status)

    for index in range(count):
        environ, body = requests[index % len(requests)]
        environ = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        answered = app(environ, start_response)
        b"".join(answered)
        getattr(answered, "close", lambda: None)()
    return statuses


def check(app_name: str, statuses: list[str]) -> None:
    refused = [status for status in statuses if not status.startswith("200")]
    if refused:
        raise SystemExit(f"{app_name}: {len(refused)} answers not 200, e.g. {refused[0]}")


def run_child(app_name: str, count: int, token: str) -> None:
    """Answer `count` requests of the MIX with the app named `app_name` (in this process)."""
    app = load_app(app_name)
    check(app_name, answer(app, mix_requests(token), count))
    close_app(app_name, app)


def cpu_child(count: int, warm: int, rounds: int, token: str, profile: str | None) -> None:
    """Both apps in this process: after `warm` requests each, `rounds` rounds of `count`
    requests of each app in turn; prints each round's CPU µs per request (all threads of the
    process, as a server's CPU counts them) as JSON. With `profile`, the decisions app's
    measured requests also run under cProfile, its stats written to that file."""
    requests = mix_requests(token)
    apps = {name: load_app(name) for name in APPS}
    for name, app in apps.items():
        check(name, answer(app, requests, warm))
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    figures: dict[str, list[float]] = {name: [] for name in APPS}
    for _ in range(rounds):
        for name, app in apps.items():
            if profiler is not None and name == "decisions":
                profiler.enable()
            began = time.process_time()
            statuses = answer(app, requests, count)
            spent = time.process_time() - began
            if profiler is not None:
                profiler.disable()
            check(name, statuses)
            figures[name].append(spent / count * 1e6)
    if profiler is not None and profile:
        profiler.dump_stats(profile)
    for name, app in apps.items():
        close_app(name, app)
    print(json.dumps(figures))


def instructions(app_name: str, count: int, env: dict[str, str], tmp: Path) -> int:
    """Instructions callgrind counts for a child answering `count` requests."""
    out = tmp / f"callgrind.{app_name}.{count}"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--child",
        app_name,
        "--count",
        str(count),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{app_name} under callgrind failed:\n{done.stderr[-3000:]}")
    totals = re.search(r"^(?:totals|summary): (\d+)", out.read_text(), re.MULTILINE)
    if totals is None:
        raise SystemExit(f"no totals in {out}")
    return int(totals.group(1))


def cpu_figures(
    src: str | None, args: argparse.Namespace, env: dict[str, str], tmp: Path, index: int
) -> dict[str, list[float]]:
    """One `cpu_child` process over the checkout `src` (None: this one)."""
    if src:
        env = env | {"PYTHONPATH": os.pathsep.join(filter(None, (src, env.get("PYTHONPATH"))))}
    command = [sys.executable, __file__, "--child", "cpu", "--count", str(args.requests)]
    command += ["--warm", str(args.warm), "--rounds", str(args.rounds)]
    if args.profile:
        command += ["--profile", f"{args.profile}.{index}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"CPU child ({src or 'this checkout'}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def report_cpu(checkouts: list[str | None], figures: dict[int, dict[str, list[float]]]) -> None:
    """Median and minimum µs per request of each app and checkout, and the median over the
    rounds of decisions/echo within a round (the two ran a moment apart, so a busy machine
    moves them alike)."""
    print("CPU µs per request in process (time.process_time, over each checkout's rounds)")
    print(f"{'checkout':<24} {'app':<10} {'median':>7} {'min':>7} {'x echo':>7}  rounds")
    for index, src in enumerate(checkouts):
        each = figures[index]
        paired = median([d / e for d, e in zip(each["decisions"], each["echo"], strict=True)])
        for app_name in APPS:
            values = each[app_name]
            rounds = " ".join(f"{value:.0f}" for value in values)
            ratio = f"{paired:>7.2f}" if app_name == "decisions" else f"{1:>7.2f}"
            print(
                f"{(src or 'this checkout')[-24:]:<24} {app_name:<10} {median(values):>7.1f}"
                f" {min(values):>7.1f} {ratio}  {rounds}"
            )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="measured requests per app")
    parser.add_argument("--warm", type=int, default=100, help="requests both runs answer first")
    parser.add_argument(
        "--src",
        action="append",
        default=[],
        help="a checkout's src folder to measure instead of this one (repeatable: each in turn)",
    )
    parser.add_argument("--cpu", action="store_true", help="CPU µs per request, not callgrind")
    parser.add_argument("--rounds", type=int, default=5, help="--cpu: rounds per process")
    parser.add_argument("--passes", type=int, default=2, help="--cpu: processes per checkout")
    parser.add_argument("--profile", help="--cpu: cProfile stats of the decisions to FILE.<n>")
    parser.add_argument("--child", choices=(*APPS, "cpu"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child == "cpu":
        token = os.environ["BENCH_TOKEN"]
        cpu_child(args.count, args.warm, args.rounds, token, args.profile)
        return 0
    if args.child:
        run_child(args.child, args.count, os.environ["BENCH_TOKEN"])
        return 0
    checkouts: list[str | None] = [str(Path(src).resolve()) for src in args.src] or [None]
    http = bench_http()
    with tempfile.TemporaryDirectory(prefix="policyd-callgrind-") as name:
        tmp = Path(name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYD_")}
        if checkouts[0]:
            sys.path.insert(0, checkouts[0])
        config = {
            "POLICYD_DATABASE_URL": f"sqlite:///{tmp / 'policyd.db'}",
            "POLICYD_SPOOL_DIR": str(tmp / "spool"),
        }
        token = http.prepare(config["POLICYD_DATABASE_URL"], config)
        (tmp / "bare_echo.py").write_text(http.BARE_APP)
        env |= config | {
            "POLICYD_POLICIES": str(http.POLICIES),
            "BENCH_TOKEN": token,
            "BENCH_ECHO_DIR": str(tmp),
            "BENCH_MIX": json.dumps([[package, subject] for package, subject, _ in http.MIX]),
        }
        if args.cpu:
            # Passes alternate the checkouts, so that each meets the machine's changing load.
            figures: dict[int, dict[str, list[float]]] = {}
            for _ in range(args.passes):
                for index, src in enumerate(checkouts):
                    run = cpu_figures(src, args, env, tmp, index)
                    for app_name, values in run.items():
                        figures.setdefault(index, {}).setdefault(app_name, []).extend(values)
            report_cpu(checkouts, figures)
            return 0
        print(f"instructions per request (callgrind, {args.requests} requests after {args.warm})")
        print(f"{'checkout':<24} {'app':<10} {'M instr':>8} {'x echo':>7}")
        for src in checkouts:
            child_env = env
            if src:
                path = os.pathsep.join(filter(None, (src, env.get("PYTHONPATH"))))
                child_env = env | {"PYTHONPATH": path}
            per_request = {}
            for app_name in APPS:
                low = instructions(app_name, args.warm, child_env, tmp)
                high = instructions(app_name, args.warm + args.requests, child_env, tmp)
                per_request[app_name] = (high - low) / args.requests
            echo = per_request["echo"]
            for app_name, count in per_request.items():
                label = (src or "this checkout")[-24:]
                print(f"{label:<24} {app_name:<10} {count / 1e6:>8.3f} {count / echo:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
