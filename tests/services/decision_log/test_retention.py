"""Decision-log retention: old entries go in batches, referenced ones stay, writers go on."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from policyd.connectors.config import Connectors, load_instances
from policyd.rules import PolicyRuntime
from policyd.services.decision_log import drop_expired_entries
from policyd.services.memberships import DirectoryMemberships
from policyd.store import Database
from policyd.store.models import AccessRequest, AuditRecord, DecisionRecord
from policyd.worker import Worker
from tests.decision_support import decision_record

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def request_for(decision_id: str) -> AccessRequest:
    return AccessRequest(
        package="p",
        subject_id="ada",
        principal="ada",
        state="delivered",
        decision_id=decision_id,
        version="v1",
        reason="",
        created_at=NOW - timedelta(days=100),
        updated_at=NOW - timedelta(days=100),
    )


def ids(store: Database) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(DecisionRecord.id)))


@pytest.fixture
def aged(store: Database) -> Database:
    """Entries 100, 31 and 29 days old, and one 100 days old that a request refers to."""
    with store.session() as session:
        for entry_id, days in (("old", 100), ("month", 31), ("recent", 29), ("kept", 100)):
            at = NOW - timedelta(days=days)
            session.add(decision_record(entry_id, at, kept=entry_id == "kept"))
        session.flush()
        session.add(request_for("kept"))
        session.commit()
    return store


def test_entries_past_the_retention_are_deleted_and_audited(aged):
    """With 30 days, the 100- and 31-day-old entries go; one audit record says how many."""
    with aged.session() as session:
        assert drop_expired_entries(session, NOW, 30, batch=1) == 2
        record = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "decision_log.pruned")
        ).one()
    assert ids(aged) == {"recent", "kept"}
    assert (record.actor, record.after["deleted"], record.after["retention_days"]) == (
        "system",
        2,
        30,
    )


def test_an_entry_a_request_refers_to_stays(aged):
    """The decision a request was filed under is its evidence: no retention deletes it."""
    with aged.session() as session:
        drop_expired_entries(session, NOW, 1)
    assert ids(aged) == {"kept"}


def test_zero_days_keeps_every_entry_and_audits_nothing(aged):
    """Retention 0 means keep forever: nothing deleted, no audit record."""
    with aged.session() as session:
        assert drop_expired_entries(session, NOW, 0) == 0
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == 0
    assert len(ids(aged)) == 4


def test_a_second_prune_finds_nothing_left(aged):
    """Idempotent: run again, it deletes nothing and records nothing more."""
    with aged.session() as session:
        drop_expired_entries(session, NOW, 30)
        assert drop_expired_entries(session, NOW, 30) == 0
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == 1


def test_a_writer_keeps_writing_while_a_prune_runs(store: Database):
    """A thread inserting entries one commit at a time keeps committing between the prune's
    batches (it is never held for the whole prune), and none of its entries is deleted."""
    with store.session() as session:
        for start in range(0, 3000, 500):
            session.add_all(
                decision_record(f"old-{n:05d}", NOW - timedelta(days=60, seconds=n))
                for n in range(start, start + 500)
            )
            session.commit()
    stop, written, during = threading.Event(), [], []

    def write() -> None:
        with store.session() as session:
            while not stop.is_set():
                session.add(decision_record(f"new-{len(written):05d}", NOW))
                session.commit()
                written.append(time.monotonic())

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while not written:
            time.sleep(0.01)
        with store.session() as session:
            began = time.monotonic()
            deleted = drop_expired_entries(session, NOW, 30, batch=50)
            ended = time.monotonic()
        during = [at for at in written if began <= at <= ended]
    finally:
        stop.set()
        writer.join()
    assert deleted == 3000
    assert len(during) >= 5, f"{len(during)} commits during a {ended - began:.2f} s prune"
    assert ids(store) == {f"new-{n:05d}" for n in range(len(written))}


def test_the_worker_prunes_with_its_retention_setting(aged):
    """The `decision-log.prune` task deletes what the worker's retention lets go, and a
    worker without a retention deletes nothing."""
    runtime = PolicyRuntime()
    connectors = Connectors(load_instances(None), DirectoryMemberships(aged.session))
    try:
        keep_all = Worker(aged.session, connectors, runtime)
        keep_all.sweep(now=NOW)
        assert ids(aged) == {"old", "month", "recent", "kept"}
        pruning = Worker(aged.session, connectors, runtime, decision_log_retention=30)
        pruning.sweep(now=NOW)
        assert ids(aged) == {"recent", "kept"}
        assert pruning.scheduler.last["decision-log.prune"].now == NOW
    finally:
        connectors.close()
        runtime.close()
