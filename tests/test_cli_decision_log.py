"""Who drains the decision log, as real processes: the drain command, the worker, `policyd
serve`; exactly once when drainers race or die; nothing left running when gunicorn stops."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policyd.cli import main
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from tests.conftest import POLICIES, ROOT
from tests.decision_support import decision_record
from tests.spool_support import (
    eventually,
    progress_rows,
    run_script,
    spool_alive,
    spool_dead,
    stored_ids,
    stored_subjects,
    subjects,
)

POLICYD = str(Path(sys.executable).with_name("policyd"))


def policyd(*args: object, **options) -> subprocess.Popen[str]:
    """`policyd ARGS` as a process of its own (its own session: its group can be checked)."""
    return subprocess.Popen(
        [POLICYD, *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **options,
    )


def finish(process: subprocess.Popen[str], timeout: float = 60) -> str:
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out
    return out


def stop(process: subprocess.Popen[str], how: int = signal.SIGTERM) -> str:
    if process.poll() is None:
        process.send_signal(how)
    return finish(process, timeout=30)


def drained(out: str) -> int:
    """The entries `drain --once` says it stored (its last line)."""
    return int(re.search(r"^stored (\d+) entries from", out, re.MULTILINE)[1])


def group_members(group: int) -> list[int]:
    """Processes of process group or session `group` that still exist (zombies included):
    a child that left the group (a process group of its own) is still in the session."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if group in (int(fields[2]), int(fields[3])):  # pgrp, session
            found.append(int(entry.name))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post_decision(port: int, token: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/decisions",
        data=json.dumps({"package": "scope-a-readers", "subject": {"id": "ghost"}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["decision_id"]


def wait_ready(port: int, process: subprocess.Popen[str], log: Path | None = None) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            output = log.read_text() if log else process.stdout.read()
            raise AssertionError(f"exited with {process.returncode}:\n{output}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return True
        except OSError:
            return False

    eventually(ready, seconds=60)


def admin_token(store) -> str:
    with store.session() as session:
        _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=datetime.now(UTC))
    return plain


def test_drain_once_stores_every_file_and_removes_the_released_ones(store, tmp_path):
    """Dead writers' files are stored and removed; a live writer's is stored and kept."""
    spool_dead(tmp_path, 0, 300)
    writer = spool_alive(tmp_path, 300, 200)
    try:
        out = finish(
            policyd(
                "decision-log",
                "drain",
                "--once",
                "--spool-dir",
                tmp_path,
                "--database-url",
                store.url,
            )
        )
        assert drained(out) == 500 and str(tmp_path) in out
        assert sorted(stored_subjects(store.url)) == subjects(0, 500)
        assert len(list(tmp_path.glob("*.jsonl"))) == 1 and len(progress_rows(store.url)) == 1
    finally:
        writer.communicate("")
    finish(
        policyd(
            "decision-log", "drain", "--once", "--spool-dir", tmp_path, "--database-url", store.url
        )
    )
    assert list(tmp_path.glob("*.jsonl")) == [] and progress_rows(store.url) == []
    assert sorted(stored_subjects(store.url)) == subjects(0, 500)


def test_the_drain_sidecar_stores_entries_as_they_come_and_stops_on_sigterm(store, tmp_path):
    drainer = policyd(
        "decision-log",
        "drain",
        "--decision-log-interval",
        "0.05",
        "--spool-dir",
        tmp_path,
        "--database-url",
        store.url,
    )
    try:
        spool_dead(tmp_path, 0, 50)
        eventually(lambda: sorted(stored_subjects(store.url)) == subjects(0, 50))
        spool_dead(tmp_path, 50, 50)
        eventually(lambda: sorted(stored_subjects(store.url)) == subjects(0, 100))
    finally:
        out = stop(drainer)
    assert f"draining {tmp_path}" in out
    eventually(lambda: group_members(drainer.pid) == [], seconds=10)


def test_two_drainers_racing_store_each_entry_once(store, tmp_path):
    """Two sidecars over one folder (two dead files and a live one): the offsets, moved with
    the entries, keep every entry stored exactly once."""
    spool_dead(tmp_path, 0, 3000)
    spool_dead(tmp_path, 3000, 3000)
    writer = spool_alive(tmp_path, 6000, 4000)
    try:
        racing = [
            policyd(
                "decision-log",
                "drain",
                "--once",
                "--spool-dir",
                tmp_path,
                "--database-url",
                store.url,
            )
            for _ in range(2)
        ]
        counts = [drained(finish(each)) for each in racing]
    finally:
        writer.communicate("")
    stored = stored_subjects(store.url)
    assert sorted(stored) == subjects(0, 10_000)  # each once
    assert sum(counts) >= 10_000  # both did work (a batch may be handled by both)


# A drainer SIGKILLed just before a COMMIT reaches the database, or just after one.
KILLED_DRAIN = """
import os, signal, sys
from sqlalchemy import event
from policyd.services.decision_log import Drainer
from policyd.store import Database

url, folder, crash = sys.argv[1:4]
database = Database(url)
drainer = Drainer(database.engine, folder)
if crash == "before-commit":
    event.listen(database.engine, "commit", lambda _: os.kill(os.getpid(), signal.SIGKILL))
else:
    store = drainer.storer.store
    def store_then_die(batch, *rest):
        store(batch, *rest)
        os.kill(os.getpid(), signal.SIGKILL)
    drainer.storer.store = store_then_die
drainer.drain()
"""


@pytest.mark.parametrize("crash", ["before-commit", "after-commit"])
def test_a_drainer_killed_around_its_commit_is_resumed_exactly(store, tmp_path, crash):
    """SIGKILL mid-drain, before or after a COMMIT: the next drain stores exactly the rest."""
    spool_dead(tmp_path, 0, 10_000)  # several batches of 1 MiB
    killed = run_script(KILLED_DRAIN, store.url, tmp_path, crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    committed = len(stored_subjects(store.url))
    assert committed == 0 if crash == "before-commit" else 0 < committed < 10_000
    out = finish(
        policyd(
            "decision-log", "drain", "--once", "--spool-dir", tmp_path, "--database-url", store.url
        )
    )
    assert drained(out) == 10_000 - committed
    assert sorted(stored_subjects(store.url)) == subjects(0, 10_000)
    assert list(tmp_path.glob("*.jsonl")) == []


def test_the_worker_drains_the_spool_of_its_host(store, tmp_path):
    """`policyd worker` runs a drain task beside its sweeps, and stops it with itself."""
    worker = policyd(
        "worker",
        "--interval",
        "1",
        "--decision-log-interval",
        "0.05",
        "--spool-dir",
        tmp_path,
        "--database-url",
        store.url,
    )
    try:
        spool_dead(tmp_path, 0, 40)
        eventually(lambda: sorted(stored_subjects(store.url)) == subjects(0, 40))
    finally:
        stop(worker)
    eventually(lambda: group_members(worker.pid) == [], seconds=10)


def test_worker_once_drains_as_well(runner, store, tmp_path):
    spool_dead(tmp_path, 0, 5)
    result = runner.invoke(
        main, ["worker", "--once", "--spool-dir", str(tmp_path), "--database-url", store.url]
    )
    assert result.exit_code == 0, result.output
    assert f"decision log: stored 5 entries from {tmp_path}" in result.output


def test_status_shows_the_lag_and_fails_past_max_age(runner, store, tmp_path):
    """An operator (or a cron check) sees what waits; --max-age makes it an exit status."""
    spool_dead(tmp_path, 0, 3)  # decided in January 2026: long ago
    args = ["decision-log", "status", "--spool-dir", str(tmp_path), "--database-url", store.url]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "not stored: 3 entries" in result.output and "s old" in result.output
    assert runner.invoke(main, [*args, "--max-age", "60"]).exit_code == 1
    runner.invoke(main, ["decision-log", "drain", "--once", *args[2:]])
    drained = runner.invoke(main, [*args, "--max-age", "60"])
    assert drained.exit_code == 0 and "oldest unstored entry: none" in drained.output


def test_drain_on_a_database_without_the_schema_says_what_to_do(runner, tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    url = f"sqlite:///{path}"
    result = runner.invoke(main, ["decision-log", "drain", "--once", "--database-url", url])
    assert result.exit_code == 1 and "run `policyd db upgrade` first" in result.output


def test_drain_on_a_missing_database_names_it_and_creates_nothing(runner, tmp_path):
    url = f"sqlite:///{tmp_path / 'nowhere.db'}"
    result = runner.invoke(main, ["decision-log", "drain", "--once", "--database-url", url])
    assert result.exit_code == 1 and "no policyd database at" in result.output
    assert not (tmp_path / "nowhere.db").exists()


# A gunicorn app whose processes check the lag every 0.2 s and call one second "behind"
# (instead of a minute each), so that the test need not wait minutes for the warning.
IMPATIENT_APP = """
import policyd.services.decision_log as decision_log

decision_log.LAG_CHECK, decision_log.LAG_WARNING = 0.2, 1.0

from policyd.api import create_app

app = create_app()
"""


def start_gunicorn(
    store, tmp_path: Path, app: str, *options: str
) -> tuple[subprocess.Popen[str], int, Path]:
    """gunicorn with two workers on the test database, in a session of its own; what it
    prints goes to the returned log file."""
    port, log = free_port(), tmp_path / "gunicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYD_")} | {
        "POLICYD_DATABASE_URL": store.url,
        "POLICYD_POLICIES": str(POLICIES),
        "POLICYD_SPOOL_DIR": str(tmp_path / "spool"),
    }
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "2", "--pythonpath", str(tmp_path), *options, app]
    with log.open("w") as output:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        wait_ready(port, server, log)
    except BaseException:
        stop_quietly(server)
        raise
    return server, port, log


def stop_quietly(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.terminate()
    server.wait(timeout=30)


@pytest.mark.parametrize("options", [(), ("--preload",)], ids=["app-per-worker", "preload"])
def test_a_gunicorn_stop_leaves_no_process_behind(store, tmp_path, options):
    """SIGTERM to gunicorn stops every process it and the app started: none of its process
    group or session survives. What its workers spooled waits for a drainer, and is stored
    once."""
    token = admin_token(store)
    server, port, log = start_gunicorn(store, tmp_path, "policyd.api:create_app()", *options)
    try:
        answered = [post_decision(port, token) for _ in range(20)]
        # The master and its two workers (gunicorn may still be forking the second one).
        eventually(lambda: len(group_members(server.pid)) >= 3, seconds=10)
    finally:
        stop_quietly(server)
    assert server.returncode == 0, log.read_text()
    eventually(lambda: group_members(server.pid) == [], seconds=10)
    finish(
        policyd(
            "decision-log",
            "drain",
            "--once",
            "--spool-dir",
            tmp_path / "spool",
            "--database-url",
            store.url,
        )
    )
    assert sorted(stored_ids(store.url)) == sorted(answered)


def test_a_gunicorn_deployment_without_a_drainer_logs_how_far_behind_it_is(store, tmp_path):
    """No drainer runs: the servers' log says how many entries wait, how old the oldest is,
    and what to run, instead of staying silent (with the checks sped up)."""
    (tmp_path / "impatient.py").write_text(IMPATIENT_APP)
    token = admin_token(store)
    server, port, log = start_gunicorn(store, tmp_path, "impatient:app")
    try:
        for _ in range(3):
            post_decision(port, token)
        eventually(lambda: "are not stored; the oldest is" in log.read_text(), seconds=30)
    finally:
        stop_quietly(server)
    warning = next(line for line in log.read_text().splitlines() if "are not stored" in line)
    assert "3 entries" in warning and "policyd decision-log drain" in warning
    assert stored_ids(store.url) == []


def test_the_embedded_serve_stores_entries_with_its_thread(store, tmp_path):
    """`policyd serve` drains its own spool in a thread: a decision is stored with no read
    and no drainer; Ctrl-C stops it all."""
    token, port = admin_token(store), free_port()
    server = policyd(
        "serve",
        "--port",
        port,
        "--database-url",
        store.url,
        env={**os.environ, "POLICYD_SPOOL_DIR": str(tmp_path)},
    )
    try:
        wait_ready(port, server)
        decision_id = post_decision(port, token)
        eventually(lambda: stored_ids(store.url) == [decision_id])
    finally:
        stop(server, signal.SIGINT)
    eventually(lambda: group_members(server.pid) == [], seconds=10)
    assert list(tmp_path.glob("*.jsonl")) == []  # its last file stored and removed at exit


def test_a_bad_interval_is_refused_naming_the_option(runner, store):
    """An interval of 0 would make a busy loop: exit 2, naming --decision-log-interval."""
    args = ["decision-log", "drain", "--decision-log-interval", "0", "--database-url", store.url]
    result = runner.invoke(main, args)
    assert result.exit_code == 2 and "--decision-log-interval" in result.output


def test_prune_deletes_entries_past_the_days_given(runner, store):
    """`decision-log prune --days N` deletes older entries and says how many; 0 deletes none."""
    with store.session() as session:
        session.add(decision_record("ancient", datetime(2020, 1, 1, tzinfo=UTC)))
        session.commit()
    args = ["decision-log", "prune", "--database-url", store.url]
    kept = runner.invoke(main, args, env={"POLICYD_DECISION_LOG_RETENTION": "0"})
    assert kept.exit_code == 0 and "nothing to delete" in kept.output
    result = runner.invoke(main, [*args, "--days", "30"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 decision-log entries older than 30 days" in result.output


def test_prune_refuses_negative_days(runner, store):
    """A bad --days is a usage error naming the option (exit 2)."""
    result = runner.invoke(
        main, ["decision-log", "prune", "--days", "-1", "--database-url", store.url]
    )
    assert result.exit_code == 2 and "--days" in result.output
