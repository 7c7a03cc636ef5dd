"""The decision log over HTTP: spooled before the answer, read back at once, its lag shown."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from policyd.api import SettingError, create_app
from policyd.api.context import components
from policyd.services.decision_log import check_lag
from policyd.store.models import DecisionRecord
from tests.conftest import ROOT
from tests.spool_support import eventually

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
        components(other).decision_log.close()
        components(other).runtime.close()
        components(other).database.dispose()


def logged_ids(app) -> list[str]:
    with components(app).database.session() as session:
        return list(session.scalars(select(DecisionRecord.id)))


def decide(app, admin) -> str:
    response = app.test_client().post("/v1/decisions", json=BODY, headers=admin)
    assert response.status_code == 200, response.text
    return response.json["decision_id"]


def test_nothing_is_stored_during_the_request(app, people, admin, make_app):
    """The answer waits for one write to the spool file only; a drainer stores the entry."""
    other = make_app()
    decision_id = decide(other, admin)
    assert logged_ids(app) == []
    assert components(other).decision_log.drain() == 1
    assert logged_ids(app) == [decision_id]


def test_reads_see_decisions_answered_on_this_host_at_once(app, client, people, admin, make_app):
    """GET stores what this host spooled first: another process's decision reads back."""
    decision_id = decide(make_app(), admin)
    assert client.get(f"/v1/decisions/{decision_id}", headers=admin).status_code == 200


def test_an_app_with_a_drain_thread_stores_its_entries_on_its_own(
    app, people, admin, make_app, tmp_path
):
    """POLICYD_DECISION_LOG_DRAIN=thread (what `policyd serve` runs): no read, no drain call."""
    drained = make_app(POLICYD_DECISION_LOG_DRAIN="thread", POLICYD_SPOOL_DIR=str(tmp_path))
    decision_id = decide(drained, admin)
    eventually(lambda: logged_ids(app) == [decision_id])


def test_close_stores_what_the_process_spooled_and_leaves_no_file(
    app, people, admin, make_app, tmp_path
):
    """A clean stop of a process that does not drain still leaves nothing behind."""
    other = make_app(POLICYD_SPOOL_DIR=str(tmp_path))
    decision_id = decide(other, admin)
    components(other).decision_log.close()
    assert logged_ids(app) == [decision_id] and list(tmp_path.glob("*.jsonl")) == []


def test_a_killed_process_loses_no_answered_decision(app, people, admin, database_url, tmp_path):
    """Decisions answered before a SIGKILL are in the log after the next drain, each once."""
    script = textwrap.dedent(
        f"""
        from policyd.api import create_app
        app = create_app({{
            "POLICYD_DATABASE_URL": {database_url!r},
            "POLICYD_POLICIES": "",
            "POLICYD_SPOOL_DIR": {str(tmp_path)!r},
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

    from policyd.services.decision_log import Drainer

    drainer = Drainer(components(app).database.engine, tmp_path)
    assert drainer.drain() >= len(answered)
    stored = logged_ids(app)
    assert set(answered) <= set(stored) and len(stored) == len(set(stored))
    assert drainer.drain() == 0 and list(tmp_path.glob("*.jsonl")) == []


def test_readyz_says_how_far_behind_the_log_is(app, people, admin, make_app, clock, tmp_path):
    """Without a drainer the lag is visible: entries and bytes waiting, the oldest's age."""
    other = make_app(POLICYD_SPOOL_DIR=str(tmp_path))
    decide(other, admin)
    decide(other, admin)
    clock.advance(seconds=90)
    lag = other.test_client().get("/readyz").json["decision_log"]
    assert lag["pending_entries"] == 2 and lag["pending_bytes"] > 0
    assert lag["oldest_pending_seconds"] == 90.0 and lag["spool_files"] == 1
    components(other).decision_log.drain()
    lag = other.test_client().get("/readyz").json["decision_log"]
    assert (lag["pending_entries"], lag["oldest_pending_seconds"]) == (0, 0.0)


def test_metrics_show_the_lag(app, people, admin, make_app, tmp_path):
    """/metrics carries the same numbers as gauges, for alerts."""
    other = make_app(POLICYD_SPOOL_DIR=str(tmp_path))
    decide(other, admin)
    text = other.test_client().get("/metrics").get_data(as_text=True)
    assert "policyd_decision_log_pending_entries 1.0" in text
    assert "policyd_decision_log_oldest_pending_seconds 0.0" in text


def test_a_process_without_a_drainer_warns_once_the_log_falls_behind(
    app, people, admin, make_app, clock, tmp_path, caplog
):
    """The check a non-draining process runs every minute: a warning naming the fix when the
    oldest entry waits over a minute, once; a note when the log caught up."""
    other = make_app(POLICYD_SPOOL_DIR=str(tmp_path))
    decision_log = components(other).decision_log
    decide(other, admin)
    caplog.set_level(logging.INFO, logger="policyd.services.decision_log")
    assert check_lag(decision_log, behind=False) is False  # only just answered
    clock.advance(seconds=61)
    assert check_lag(decision_log, behind=False) is True
    assert "1 entries" in caplog.text and "policyd decision-log drain" in caplog.text
    decision_log.drain()
    assert check_lag(decision_log, behind=True) is False
    assert "caught up" in caplog.text


def test_what_postgresql_would_refuse_is_a_422_before_spooling(app, people, token, make_app):
    """A NUL in a trusted caller's subject id: PostgreSQL would refuse it, so on every
    backend it is the caller's 422 naming the field, never an entry the drainer cannot store."""
    body = {"package": "scope-a-readers", "subject": {"id": "a\x00b"}}
    other = make_app()
    response = other.test_client().post(
        "/v1/decisions", json=body, headers=token("trusted-app", "app")
    )
    assert response.status_code == 422
    assert response.json["errors"] == {"subject.id": ["text may not contain the NUL character"]}


def test_a_subject_id_no_database_can_take_is_422(client, people, admin):
    """A lone surrogate in the subject id is a client error, not a 500."""
    response = client.post(
        "/v1/decisions",
        data='{"package": "scope-a-readers", "subject": {"id": "\\ud800"}}',
        content_type="application/json",
        headers=admin,
    )
    assert response.status_code == 422 and "subject.id" in response.json["errors"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POLICYD_DECISION_LOG_DRAIN", "process"),
        ("POLICYD_DECISION_LOG_INTERVAL", "soon"),
        ("POLICYD_DECISION_LOG_INTERVAL", "0"),
    ],
)
def test_a_bad_decision_log_setting_stops_the_start_naming_it(database_url, name, value):
    with pytest.raises(SettingError, match=name):
        create_app({"POLICYD_DATABASE_URL": database_url, name: value})


def test_spool_folder_defaults_beside_the_sqlite_file(app, database_url):
    """SQLite: `<file>.spool`; PostgreSQL: a folder per database in the temp directory."""
    folder = components(app).decision_log.spool.folder
    if database_url.startswith("sqlite"):
        assert str(folder) == os.path.realpath(database_url.removeprefix("sqlite:///") + ".spool")
    else:
        assert folder.name.startswith("policyd-spool-")
