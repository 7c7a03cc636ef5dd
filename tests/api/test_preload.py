"""gunicorn with policyd.api.preload: the master loads the app and its policy version once,
and every worker it forks answers decisions with that version, on connections of its own."""

from __future__ import annotations

import os
import re
import signal

from tests.spool_support import eventually
from tests.test_cli_decision_log import admin_token, post_decision, start_gunicorn, stop_quietly

PRELOAD = ("-c", "python:policyd.api.preload")
LOADED = re.compile(r"policy version \w+ loaded in [\d.]+ s by process (\d+)")
FORKED = re.compile(r"process (\d+) serves policy version \w+ as loaded before the fork")


def pids(pattern: re.Pattern[str], text: str) -> list[int]:
    return [int(pid) for pid in pattern.findall(text)]


def test_a_preloaded_app_loads_its_policy_once_and_each_worker_answers(store, tmp_path):
    """The policy version is loaded by the master alone; each of the two forked workers,
    answering while the other is stopped, decides with it."""
    token = admin_token(store)
    server, port, log = start_gunicorn(store, tmp_path, "policyd.api:create_app()", *PRELOAD)
    try:
        eventually(lambda: len(pids(FORKED, log.read_text())) == 2, seconds=30)
        workers = pids(FORKED, log.read_text())
        for answering in workers:
            others = [pid for pid in workers if pid != answering]
            for pid in others:  # a stopped worker accepts nothing: the other one answers
                os.kill(pid, signal.SIGSTOP)
            try:
                assert all(post_decision(port, token) for _ in range(3))
            finally:
                for pid in others:
                    os.kill(pid, signal.SIGCONT)
    finally:
        stop_quietly(server)
    text = log.read_text()
    assert server.returncode == 0, text
    assert pids(LOADED, text) == [server.pid]
    assert len(set(workers)) == 2 and server.pid not in workers
