"""Instructions per request (valgrind callgrind, in process): POST /v1/decisions and a bare echo.

Each app answers the requests of bench/http.py (its MIX, an admin token) straight through its
WSGI callable, no server, no sockets: the count is the app's own work and repeatable on a
loaded machine. Each app runs twice under callgrind, with `--warm` requests and with `--warm`
plus `--requests`; the difference over `--requests` is the cost of one request, start-up and
first-call costs cancelled. `--src` measures another checkout's `src` (for example main's,
unpacked with `git archive`) with the same harness.

    python bench/pipeline.py [--requests 400] [--warm 100] [--src DIR]
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


def run_child(app_name: str, count: int, token: str) -> None:
    """Answer `count` requests of the MIX with the app named `app_name` (in this process)."""
    from werkzeug.test import EnvironBuilder

    if app_name == "echo":
        sys.path.insert(0, os.environ["BENCH_ECHO_DIR"])
        from bare_echo import app  # type: ignore[import-not-found]
    else:
        from policyd.api import create_app

        app = create_app()
    mix = json.loads(os.environ["BENCH_MIX"])
    requests = []
    for package, subject in mix:
        body = json.dumps({"package": package, "subject": {"id": subject}}).encode()
        builder = EnvironBuilder(
            path="/v1/decisions",
            method="POST",
            headers={"Authorization": f"Bearer {token}"},
            data=body,
            content_type="application/json",
        )
        requests.append((builder.get_environ(), body))
    statuses: list[str] = []

    def start_response(status: str, _headers: list[Any], _exc_info: Any = None) -> None:
        statuses.append(status)

    for index in range(count):
        environ, body = requests[index % len(requests)]
        environ = dict(environ, **{"wsgi.input": io.BytesIO(body)})
        answer = app(environ, start_response)
        b"".join(answer)
        getattr(answer, "close", lambda: None)()
    refused = [status for status in statuses if not status.startswith("200")]
    if refused:
        raise SystemExit(f"{app_name}: {len(refused)} answers not 200, e.g. {refused[0]}")
    if app_name == "decisions":
        from policyd.api.context import components

        components(app).decision_log.close()
        components(app).runtime.close()


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="measured requests per app")
    parser.add_argument("--warm", type=int, default=100, help="requests both runs answer first")
    parser.add_argument("--src", help="a checkout's src folder to measure instead of this one")
    parser.add_argument("--child", choices=APPS, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child, args.count, os.environ["BENCH_TOKEN"])
        return 0
    http = bench_http()
    with tempfile.TemporaryDirectory(prefix="policyd-callgrind-") as name:
        tmp = Path(name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYD_")}
        if args.src:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, (args.src, env.get("PYTHONPATH"))))
            sys.path.insert(0, args.src)
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
        per_request = {}
        for app_name in APPS:
            low = instructions(app_name, args.warm, env, tmp)
            high = instructions(app_name, args.warm + args.requests, env, tmp)
            per_request[app_name] = (high - low) / args.requests
    echo = per_request["echo"]
    print(f"instructions per request (callgrind, {args.requests} requests after {args.warm})")
    print(f"{'app':<10} {'M instr':>8} {'x echo':>7}")
    for app_name, count in per_request.items():
        print(f"{app_name:<10} {count / 1e6:>8.3f} {count / echo:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
