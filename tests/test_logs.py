"""Log lines: JSON off a terminal, plain text on one; `policyd worker` writes them."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from policyd import logs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_are_json_when_not_on_a_terminal():
    """Off a terminal each record is one JSON object with time, level, logger and message."""
    stream = io.StringIO()
    handler = logs.configure("INFO", stream=stream)
    try:
        logging.getLogger("policyd.test").warning("disk %s full", "spool")
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert (line["level"], line["logger"], line["message"]) == (
        "warning",
        "policyd.test",
        "disk spool full",
    )
    assert "request_id" not in line


def test_a_periodic_tasks_line_names_the_task():
    """A line logged for a periodic task's run carries the task's name as `task`."""
    stream = io.StringIO()
    handler = logs.configure("INFO", stream=stream)
    try:
        logging.getLogger("policyd.periodic").info("ran", extra={"task": "assignments.expire"})
    finally:
        logging.getLogger().removeHandler(handler)
    assert json.loads(stream.getvalue())["task"] == "assignments.expire"


def test_lines_are_text_on_a_terminal_and_name_the_request():
    """On a terminal a record is a plain line, with the request id when there is one."""
    stream = Terminal()
    handler = logs.configure("INFO", stream=stream)
    token = logs.request_id.set("r-1")
    try:
        logging.getLogger("policyd.test").info("hello")
    finally:
        logs.request_id.reset(token)
        logging.getLogger().removeHandler(handler)
    assert stream.getvalue().rstrip().endswith("INFO policyd.test: hello [request r-1]")


def test_configuring_twice_keeps_one_handler():
    """A second configure replaces the handler of the first instead of doubling lines."""
    first = logs.configure("INFO", stream=io.StringIO())
    second = logs.configure("INFO", stream=io.StringIO())
    try:
        assert first not in logging.getLogger().handlers
        assert second in logging.getLogger().handlers
    finally:
        logging.getLogger().removeHandler(second)


def test_policyd_worker_writes_its_log_lines(tmp_path: Path):
    """`policyd worker` configures logging: its info lines reach stderr as JSON."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    policyd = str(Path(sys.executable).parent / "policyd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYD_")}
    env["POLICYD_DATABASE_URL"] = url
    subprocess.run([policyd, "db", "upgrade"], env=env, check=True, capture_output=True)
    worker = subprocess.Popen(
        [policyd, "worker", "--interval", "0.2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        line = worker.stderr.readline()
        while "running" not in line and time.monotonic() < deadline and line:
            line = worker.stderr.readline()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        worker.stderr.close()
    entry = json.loads(line)
    assert entry["logger"] == "policyd.cli.worker"
    assert entry["level"] == "info"
    assert "running" in entry["message"]


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    """Three failed passes log one error with its traceback; the next good pass logs the
    recovery once; good passes outside an outage log nothing."""
    outage = logs.Outage(logging.getLogger("policyd.test"), "storing failed", "storing again")
    with caplog.at_level(logging.INFO, logger="policyd.test"):
        outage.succeeded()
        for _ in range(3):
            try:
                raise OSError("disk gone")
            except OSError:
                outage.failed()
        outage.succeeded()
        outage.succeeded()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "storing failed"),
        ("INFO", "storing again"),
    ]
    assert caplog.records[0].exc_info[1].args == ("disk gone",)


def test_request_ids_are_random_uuid4_hex_never_repeated_across_a_fork():
    """A request id reads as `uuid.uuid4().hex` does (version 4, the RFC's variant); ids drawn
    past several pools never repeat, and a forked child draws none of its parent's."""
    ids = [logs.new_request_id() for _ in range(1000)]
    for text in ids:
        parsed = uuid.UUID(hex=text)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, text)
    assert len(set(ids)) == len(ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave at once
        os.write(write, " ".join(logs.new_request_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    parent = {logs.new_request_id() for _ in range(10)}
    assert len(child) == 10 and not child & parent
