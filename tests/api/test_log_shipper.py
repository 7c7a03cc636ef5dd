"""The decision-log shipper process: stores every process's spool at idle CPU priority."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from policyd.api import create_app
from policyd.services import log_shipper
from policyd.services.decision_log import DecisionLog, _watch_shipper
from policyd.services.log_shipper import Shipper, shipper_running
from policyd.store.models import DecisionRecord, SpoolProgress
from policyd.store.spool import Spool

BODY = {"package": "scope-a-readers", "subject": {"id": "ada"}}

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling only")


def stored(app) -> list[str]:
    with app.extensions["policyd.db"].session() as session:
        return list(session.scalars(select(DecisionRecord.id)))


def eventually(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


@pytest.fixture
def shipping_app(app, database_url, clock, tmp_path) -> Iterator:
    """Apps (processes, as it were) whose decision logs a shipper process stores; one spool
    folder for all of them. Their shippers are stopped afterwards."""
    made = []

    def make(**config):
        made.append(
            create_app(
                {
                    "POLICYD_DATABASE_URL": database_url,
                    "POLICYD_POLICIES": "",
                    "POLICYD_CLOCK": clock,
                    "POLICYD_DECISION_LOG_STORER": "process",
                    "POLICYD_SPOOL_DIR": str(tmp_path / "spool"),
                    **config,
                }
            )
        )
        return made[-1]

    yield make
    for other in made:
        decision_log: DecisionLog = other.extensions["policyd.decision_log"]
        decision_log.close()
        if decision_log.shipper is not None:
            decision_log.shipper.terminate()
            decision_log.shipper.wait(timeout=30)
        other.extensions["policyd.runtime"].close()
        other.extensions["policyd.db"].dispose()


def without_watchdog(app) -> DecisionLog:
    """The app's decision log, its watchdog stopped: no shipper starts on its own."""
    decision_log: DecisionLog = app.extensions["policyd.decision_log"]
    decision_log._stop.set()
    decision_log._thread.join()
    return decision_log


def decide(app, admin, count: int) -> list[str]:
    client = app.test_client()
    answers = [client.post("/v1/decisions", json=BODY, headers=admin) for _ in range(count)]
    assert all(answer.status_code == 200 for answer in answers)
    return [answer.json["decision_id"] for answer in answers]


def test_entries_are_stored_by_a_shipper_at_idle_priority(app, people, admin, shipping_app):
    """No flush call and no flusher thread in the deciding process: the shipper it started
    stores the entries, each once, and runs in the idle scheduling class."""
    deciding = shipping_app()
    ids = decide(deciding, admin, 5)
    eventually(lambda: sorted(stored(app)) == sorted(ids))
    shipper = deciding.extensions["policyd.decision_log"].shipper
    assert shipper is not None and shipper.poll() is None
    assert os.sched_getscheduler(shipper.pid) == os.SCHED_IDLE
    # This process runs no flusher, only a thread that keeps a shipper running.
    assert deciding.extensions["policyd.decision_log"]._thread.name == "policyd-decision-log-watch"


def test_one_shipper_serves_every_process_of_a_folder(app, people, admin, shipping_app):
    """Two processes spooling into one folder: one shipper stores both, each entry once."""
    first, second = shipping_app(), shipping_app()
    ids = decide(first, admin, 3) + decide(second, admin, 3)
    eventually(lambda: sorted(stored(app)) == sorted(ids))
    logs = [made.extensions["policyd.decision_log"] for made in (first, second)]
    shippers = [log.shipper for log in logs if log.shipper is not None]
    # Both may have started one at the same moment; the one without the lock exits.
    eventually(lambda: sum(shipper.poll() is None for shipper in shippers) == 1)
    assert shipper_running(first.extensions["policyd.decision_log"].spool.folder)


def test_a_killed_shipper_is_started_again_and_loses_nothing(app, people, admin, shipping_app):
    deciding = shipping_app()
    decision_log: DecisionLog = deciding.extensions["policyd.decision_log"]
    ids = decide(deciding, admin, 4)
    eventually(lambda: len(stored(app)) == 4)
    killed = decision_log.shipper
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    ids += decide(deciding, admin, 4)
    eventually(lambda: decision_log.shipper is not killed and decision_log.shipper is not None)
    eventually(lambda: sorted(stored(app)) == sorted(ids))


def test_a_shipper_still_starting_is_not_started_again(app, people, admin, shipping_app):
    """On a saturated machine an idle-priority shipper may wait long for its first CPU time,
    before it takes the lock: the process that started it must not start one every check."""
    deciding = shipping_app()
    decision_log = without_watchdog(deciding)
    decide(deciding, admin, 1)
    starting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    decision_log.shipper = starting  # alive, and holding no lock yet
    try:
        assert decision_log.ensure_shipper() and decision_log.shipper is starting
        assert not shipper_running(decision_log.spool.folder)
    finally:
        starting.kill()
        starting.wait()
    assert decision_log.ensure_shipper()  # that one is gone: a new one starts
    assert decision_log.shipper is not starting and decision_log.shipper is not None
    eventually(lambda: shipper_running(decision_log.spool.folder))


def test_a_process_that_cannot_start_a_shipper_stores_its_own_entries(
    app, people, admin, shipping_app, monkeypatch
):
    deciding = shipping_app()
    decision_log = without_watchdog(deciding)
    ids = decide(deciding, admin, 2)

    def cannot_start(*_args):
        raise OSError("no interpreter to run it")

    monkeypatch.setattr(log_shipper, "start_shipper", cannot_start)

    class OneCheck:
        def wait(self, _timeout: float) -> bool:
            return True  # stop after the first check

    _watch_shipper(weakref.ref(decision_log), OneCheck(), 0.1, 10.0)
    assert decision_log.shipper is None and sorted(stored(app)) == sorted(ids)


def test_a_closed_process_file_is_stored_and_removed_by_the_shipper(
    app, people, admin, shipping_app
):
    """close() stores the rest itself and releases the file; the shipper removes it and its
    spool_progress row."""
    deciding = shipping_app()
    decision_log = without_watchdog(deciding)
    ids = decide(deciding, admin, 3)
    folder = decision_log.spool.folder
    decision_log.close()
    assert sorted(stored(app)) == sorted(ids)  # close() stored them
    assert list(folder.glob("*.jsonl"))  # released, not removed: the shipper may be reading it

    shipper = Shipper(deciding.extensions["policyd.db"].engine, folder, idle_exit=0)
    shipper.run(threading.Event())  # one sweep, then nothing is left: it returns
    assert not list(folder.glob("*.jsonl")) and sorted(stored(app)) == sorted(ids)
    with deciding.extensions["policyd.db"].session() as session:
        assert session.scalars(select(SpoolProgress)).all() == []


def test_the_shipper_stores_from_the_offset_the_database_holds(app, people, admin, shipping_app):
    """What the owner stored itself (a read of its own decisions) is not stored again."""
    deciding = shipping_app()
    decision_log = without_watchdog(deciding)
    ids = decide(deciding, admin, 2)
    assert decision_log.flush() == 2
    ids += decide(deciding, admin, 3)
    shipper = Shipper(deciding.extensions["policyd.db"].engine, decision_log.spool.folder)
    assert shipper.ship() == 3
    assert shipper.ship() == 0
    assert sorted(stored(app)) == sorted(ids)
    assert decision_log.flush() == 0  # it learns what the shipper stored
    shipper.close()


def test_a_shipper_leaves_when_its_folder_is_gone_or_idle(tmp_path, app):
    engine = app.extensions["policyd.db"].engine
    folder = tmp_path / "spool"
    shipper = Shipper(engine, folder, interval=0.01, idle_exit=0.2)
    assert shipper.acquire()
    other = Shipper(engine, folder)
    assert shipper_running(folder) and not other.acquire()  # one per folder
    started = time.monotonic()
    shipper.run(threading.Event())
    assert 0.2 <= time.monotonic() - started < 5
    shipper.close()
    assert not shipper_running(folder)

    shipper = Shipper(engine, folder, interval=0.01, idle_exit=3600)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    shipper.run(threading.Event())  # returns: nothing can ever be spooled there again
    shipper.close()


def test_a_handoff_spool_rotates_and_closes_without_removing(tmp_path):
    """With a shipper, a full file is released at the next append and close() releases the
    last one: both wait for the shipper, which alone removes files."""
    spool = Spool(tmp_path, rotate_bytes=100, handoff=True)
    record = b"x" * 79 + b"\n"
    spool.append(record)
    spool.append(record)  # 160 bytes now: the next append starts a new file
    first = spool.path
    spool.append(record)
    assert spool.path != first and first.exists()
    assert spool.advance(80) is None and spool.path.exists()  # never removed by the owner
    assert [orphan.name for orphan in _release_all(spool.orphans())] == [first.name]
    spool.close()
    assert sorted(orphan.name for orphan in _release_all(spool.orphans())) == sorted(
        path.name for path in tmp_path.glob("*.jsonl")
    )
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def _release_all(orphans):
    found = list(orphans)
    for orphan in found:
        orphan.release()
    return found


def test_an_unknown_storer_stops_the_start(database_url):
    with pytest.raises(ValueError, match="POLICYD_DECISION_LOG_STORER: 'cron' is not one of"):
        create_app({"POLICYD_DATABASE_URL": database_url, "POLICYD_DECISION_LOG_STORER": "cron"})
