"""The decision log: spooled entries survive a killed process and reach the database once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from policyd.api import create_app
from policyd.services.decision_log import (
    REJECTED,
    DecisionLog,
    _flush_forever,
    decode,
    encode,
    insert_rows,
)
from policyd.store.models import DecisionRecord
from tests.conftest import ROOT

BODY = {"package": "scope-a-readers", "subject": {"id": "ada"}}


@pytest.fixture
def make_app(app, database_url, clock) -> Iterator:
    """More apps on the test database (more processes, as it were), closed before `app`."""
    made = []

    def make(**config):
        settings = {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": "",
            "POLICYD_CLOCK": clock,
            "POLICYD_TRUSTED_APPS": "trusted-app",
            **config,
        }
        made.append(create_app(settings))
        return made[-1]

    yield make
    for other in made:
        other.extensions["policyd.decision_log"].close()
        other.extensions["policyd.runtime"].close()
        other.extensions["policyd.db"].dispose()


def logged_ids(app) -> list[str]:
    with app.extensions["policyd.db"].session() as session:
        return list(session.scalars(select(DecisionRecord.id)))


def test_a_killed_process_loses_no_answered_decision(app, people, admin, database_url):
    """Decisions answered before a SIGKILL are in the log after the next sweep, each once."""
    script = textwrap.dedent(
        f"""
        from policyd.api import create_app
        app = create_app({{
            "POLICYD_DATABASE_URL": {database_url!r},
            "POLICYD_POLICIES": "",
            "POLICYD_DECISION_LOG_INTERVAL": 3600,  # nothing reaches the database on its own
        }})
        client = app.test_client()
        while True:
            response = client.post("/v1/decisions", json={BODY!r}, headers={admin!r})
            assert response.status_code == 200, response.text
            print(response.json["decision_id"], flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        answered = [child.stdout.readline().strip() for _ in range(25)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert all(answered) and logged_ids(app) == []  # only in the dead process's spool

    decision_log = app.extensions["policyd.decision_log"]
    assert decision_log.sweep() >= len(answered)
    stored = logged_ids(app)
    assert set(answered) <= set(stored) and len(stored) == len(set(stored))
    assert decision_log.sweep() == 0 and sorted(logged_ids(app)) == sorted(stored)


def test_a_new_process_sweeps_at_start(app, people, admin, make_app):
    """Entries a process left unstored are inserted when the next process starts."""
    first = make_app(POLICYD_DECISION_LOG_INTERVAL=3600)
    response = first.test_client().post("/v1/decisions", json=BODY, headers=admin)
    first.extensions["policyd.decision_log"].spool.close()  # released, as by a crash
    assert logged_ids(app) == []
    make_app()
    assert logged_ids(app) == [response.json["decision_id"]]


def test_reads_in_the_deciding_process_see_its_decisions_at_once(app, client, people, admin):
    """GET stores this process's spooled entries first; only other processes' reads lag."""
    decision_id = client.post("/v1/decisions", json=BODY, headers=admin).json["decision_id"]
    assert client.get(f"/v1/decisions/{decision_id}", headers=admin).status_code == 200


def test_spooled_entries_reach_the_database_on_flush(app, people, admin, make_app):
    """Nothing is inserted during the request; `flush` (what the thread runs) inserts it."""
    other = make_app(POLICYD_DECISION_LOG_INTERVAL=3600)
    decision_id = (
        other.test_client().post("/v1/decisions", json=BODY, headers=admin).json["decision_id"]
    )
    assert logged_ids(app) == []
    assert other.extensions["policyd.decision_log"].flush() == 1
    assert logged_ids(app) == [decision_id]


def test_the_flusher_thread_flushes_and_sweeps(app, people, admin, make_app):
    """One tick of the background loop stores this process's entries and dead ones'."""
    dead = make_app(POLICYD_DECISION_LOG_INTERVAL=3600)
    dead.test_client().post("/v1/decisions", json=BODY, headers=admin)
    dead.extensions["policyd.decision_log"].spool.close()  # released, as by a crash
    alive = make_app(POLICYD_DECISION_LOG_INTERVAL=3600)
    alive.test_client().post("/v1/decisions", json=BODY, headers=admin)

    class OneTick:
        ticks = 0

        def wait(self, timeout: float) -> bool:
            self.ticks += 1
            return self.ticks > 1  # True: stop

    _flush_forever(weakref.ref(alive.extensions["policyd.decision_log"]), OneTick(), 0.1, 0)
    assert len(logged_ids(app)) == 2


def test_sync_mode_commits_the_entry_with_the_answer(app, people, admin, make_app):
    """POLICYD_DECISION_LOG=sync: the row exists once the answer is out, and no spool."""
    other = make_app(POLICYD_DECISION_LOG="sync")
    decision_id = (
        other.test_client().post("/v1/decisions", json=BODY, headers=admin).json["decision_id"]
    )
    assert logged_ids(app) == [decision_id]
    assert other.extensions["policyd.decision_log"].spool is None


def test_replaying_entries_never_duplicates_them(app, people, admin, make_app):
    """The insert skips ids already stored, so a spool swept twice adds nothing."""
    other = make_app(POLICYD_DECISION_LOG_INTERVAL=3600)
    other.test_client().post("/v1/decisions", json=BODY, headers=admin)
    _, lines = other.extensions["policyd.decision_log"].spool.pending()
    rows = [decode(line) for line in lines]
    with app.extensions["policyd.db"].engine.begin() as connection:
        insert_rows(connection, rows)
        insert_rows(connection, rows)
    assert len(logged_ids(app)) == 1
    assert other.extensions["policyd.decision_log"].flush() == 1
    assert len(logged_ids(app)) == 1


def test_entries_the_database_refuses_are_kept_aside(app, people, admin, make_app, tmp_path):
    """A line that cannot be stored is kept in rejected.txt; the ones after it still get in."""
    other = make_app(POLICYD_DECISION_LOG_INTERVAL=3600, POLICYD_SPOOL_DIR=str(tmp_path))
    decision_log = other.extensions["policyd.decision_log"]
    client = other.test_client()
    client.post("/v1/decisions", json=BODY, headers=admin)
    decision_log.spool.append(b"not a decision-log entry\n")
    client.post("/v1/decisions", json=BODY, headers=admin)
    assert decision_log.flush() == 3
    assert len(logged_ids(app)) == 2
    rejected = (decision_log.spool.folder / REJECTED).read_bytes()
    assert rejected == b"not a decision-log entry\n"
    assert decision_log.sweep() == 0  # and it is never taken for a spool


def test_what_postgresql_would_refuse_is_a_422_before_spooling(
    app, people, token, make_app, database_url
):
    """A NUL in a trusted caller's subject id: PostgreSQL refuses it, so it is the caller's
    422 (as in sync mode) rather than an entry the flusher could never store."""
    body = {"package": "scope-a-readers", "subject": {"id": "a\x00b"}}
    other = make_app()
    response = other.test_client().post(
        "/v1/decisions", json=body, headers=token("trusted-app", "app")
    )
    if database_url.startswith("postgresql"):
        assert response.status_code == 422
        assert response.json["message"] == "a value is too long or malformed for the database"
    else:
        assert response.status_code == 200  # SQLite stores it, as it always did


def test_a_subject_id_no_database_can_take_is_422(client, people, admin):
    """A lone surrogate in the subject id is a client error, not a 500."""
    response = client.post(
        "/v1/decisions",
        data='{"package": "scope-a-readers", "subject": {"id": "\\ud800"}}',
        content_type="application/json",
        headers=admin,
    )
    assert response.status_code == 422 and "subject.id" in response.json["errors"]


def test_an_unknown_mode_stops_the_start(database_url):
    """POLICYD_DECISION_LOG is sync or spool."""
    with pytest.raises(
        ValueError, match=r"POLICYD_DECISION_LOG: 'async' is not one of spool, sync"
    ):
        create_app({"POLICYD_DATABASE_URL": database_url, "POLICYD_DECISION_LOG": "async"})


def test_in_memory_sqlite_logs_synchronously():
    """An in-memory database dies with its process: there is nothing a spool could add."""
    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    assert DecisionLog(engine).spool is None
    engine.dispose()


def test_spool_lines_hold_json_text_per_column():
    """A line is the plain columns as JSON, then each JSON column's text, tab-separated."""
    from datetime import UTC, datetime

    entry = {
        "id": "x",
        "at": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        "package": "p",
        "subject_id": "s",
        "outcome": "deny",
        "rule": None,
        "matched": [],
        "reason": "tab\there",
        "version": "v",
        "input": {"subject": {"note": "line\nbreak"}},
        "result": {"decision": "deny"},
        "principal": "me",
    }
    line = encode(entry, allow_nan=True, strict=False)
    assert line.count(b"\t") == 3 and line.endswith(b"\n") and line.count(b"\n") == 1
    row = decode(line.rstrip(b"\n"))
    assert row["at"] == entry["at"] and row["input"] == '{"subject":{"note":"line\\nbreak"}}'


def test_spool_folder_defaults_beside_the_sqlite_file(app, database_url):
    """SQLite: `<file>.spool`; PostgreSQL: a folder per database in the temp directory."""
    folder = app.extensions["policyd.decision_log"].spool.folder
    if database_url.startswith("sqlite"):
        assert str(folder) == os.path.realpath(database_url.removeprefix("sqlite:///") + ".spool")
    else:
        assert folder.name.startswith("policyd-spool-")


SPOOL_ENTRIES = """
import os, sys, uuid
from datetime import UTC, datetime
from policyd.services.decision_log import encode
from policyd.store.spool import Spool

spool = Spool(sys.argv[1])
now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
for number in range(int(sys.argv[2])):
    entry = {
        "id": str(uuid.uuid4()), "at": now, "package": "p", "subject_id": f"s{number}",
        "outcome": "deny", "rule": None, "matched": [], "reason": "r", "version": "v",
        "input": {"n": number}, "result": {"decision": "deny"}, "principal": "me",
    }
    spool.append(encode(entry, allow_nan=False, strict=True))
os._exit(0)  # no clean-up: the file is left as by a crash
"""

SWEEP = """
import os, signal, sys
from sqlalchemy import event
from policyd.services.decision_log import DecisionLog
from policyd.store import Database

url, folder, crash = sys.argv[1:4]
database = Database(url)
decision_log = DecisionLog(database.engine, "spool", folder, interval=3600)
if crash == "before-commit":  # the entries are sent, the COMMIT never is
    event.listen(database.engine, "commit", lambda _: os.kill(os.getpid(), signal.SIGKILL))
elif crash == "after-commit":  # committed, but the spool never hears of it
    store = decision_log._store
    def store_then_die(batch):
        store(batch)
        os.kill(os.getpid(), signal.SIGKILL)
    decision_log._store = store_then_die
print(decision_log.sweep(), flush=True)
"""


def run_script(script: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


@pytest.fixture
def dead_spool(tmp_path):
    """A spool folder holding a dead process's file of `n` unstored entries."""

    def make(n: int):
        run_script(SPOOL_ENTRIES, tmp_path, n).check_returncode()
        return tmp_path

    return make


def stored_subjects(app) -> list[str]:
    with app.extensions["policyd.db"].session() as session:
        return list(session.scalars(select(DecisionRecord.subject_id)))


@pytest.mark.parametrize("crash", ["before-commit", "after-commit"])
def test_a_sweep_killed_around_its_commit_is_resumed_exactly(app, database_url, dead_spool, crash):
    """SIGKILL between storing a batch and its COMMIT, or between the COMMIT and the spool's
    own note of it: the next sweep stores exactly the entries that were not committed."""
    folder = dead_spool(2500)  # three batches
    killed = run_script(SWEEP, database_url, folder, crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    committed = 1000 if crash == "after-commit" else 0
    assert len(stored_subjects(app)) == committed

    decision_log = DecisionLog(app.extensions["policyd.db"].engine, "spool", folder)
    assert decision_log.sweep() == 2500 - committed  # nothing stored is sent again
    subjects = stored_subjects(app)
    assert sorted(subjects) == sorted(f"s{number}" for number in range(2500))
    assert decision_log.sweep() == 0


def test_two_processes_sweeping_one_dead_spool_store_each_entry_once(app, database_url, dead_spool):
    """Sweepers racing for the same dead files, one of them killed after a commit."""
    folder = dead_spool(1500)
    dead_spool(1500)  # a second dead file in the same folder
    killed = run_script(SWEEP, database_url, folder, "after-commit")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    sweepers = [
        subprocess.Popen(
            [sys.executable, "-c", SWEEP, database_url, str(folder), "none"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    handled = []
    for sweeper in sweepers:
        out, _ = sweeper.communicate(timeout=120)
        assert sweeper.returncode == 0
        handled.append(int(out))
    assert sum(handled) == 3000 - 1000
    subjects = stored_subjects(app)
    assert len(subjects) == 3000 and sorted(set(subjects)) == sorted(
        f"s{number}" for number in range(1500)
    )


def test_a_commit_whose_answer_was_lost_is_not_stored_again(app, people, admin, make_app):
    """If the COMMIT went through but the flusher saw an error, the retry finds the stored
    offset ahead of it and moves on instead of inserting the batch again."""
    other = make_app(POLICYD_DECISION_LOG_INTERVAL=3600)
    decision_log = other.extensions["policyd.decision_log"]
    other.test_client().post("/v1/decisions", json=BODY, headers=admin)
    batch = decision_log.spool.unstored()
    assert decision_log._store(batch) == (batch.end, 1)  # committed; the spool was never told
    assert decision_log.flush() == 0
    assert len(logged_ids(app)) == 1 and decision_log.spool.unstored() is None
