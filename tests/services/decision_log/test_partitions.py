"""Retention by partition: old months dropped whole on PostgreSQL (batched deletes on SQLite)
while a writer keeps inserting, kept entries never dropped, months prepared ahead."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from sqlalchemy import select, text

from policyd.domain import RequestOptions
from policyd.services.actor import Actor, Role
from policyd.services.decision_log import drop_expired_entries, ensure_partitions
from policyd.services.decisions import DecisionService
from policyd.services.requests import RequestService
from policyd.store import Database, partitions
from policyd.store.models import AuditRecord, DecisionRecord
from policyd.store.partitions import Month
from tests.decision_support import decision_record

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
APRIL = Month(datetime(2026, 4, 1, tzinfo=UTC))


def ids(store: Database) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(DecisionRecord.id)))


# Partitions are PostgreSQL's (SQLite deletes in batches): these tests run on PostgreSQL only,
# by choosing the backend of the session's `database_url` rather than skipping on SQLite.
on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.fixture
def months(store: Database) -> Database:
    """Month partitions from March to July 2026 (on PostgreSQL), and 3,000 entries of April
    nothing refers to, 200 of 1 May (inside the boundary month of a 30-day cut-off), and two
    kept entries of April."""
    with store.session() as session:
        ensure_partitions(session, datetime(2026, 3, 1, tzinfo=UTC), ahead=4)
        for start in range(0, 3000, 1000):
            session.add_all(
                decision_record(f"april-{n:05d}", APRIL.start + timedelta(minutes=n))
                for n in range(start, start + 1000)
            )
            session.commit()
        session.add_all(
            decision_record(f"may-{n:03d}", datetime(2026, 5, 1, 1, n // 60, n % 60, tzinfo=UTC))
            for n in range(200)
        )
        session.add_all(
            decision_record(f"kept-{n}", APRIL.start + timedelta(days=n), kept=True)
            for n in range(2)
        )
        session.commit()
    return store


class Writer:
    """A thread inserting today's entries, one commit each, noting when each committed."""

    def __init__(self, store: Database):
        self.store = store
        self.stop = threading.Event()
        self.committed: list[float] = []
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with self.store.session() as session:
            while not self.stop.is_set():
                session.add(decision_record(f"new-{len(self.committed):05d}", NOW))
                session.commit()
                self.committed.append(time.monotonic())

    def __enter__(self) -> Writer:
        self.thread.start()
        while not self.committed:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def during(self, began: float, ended: float) -> tuple[int, float]:
        """Inserts completed between `began` and `ended`, and the longest wait for one."""
        times = [began, *(at for at in self.committed if began <= at <= ended), ended]
        return len(times) - 2, max(b - a for a, b in pairwise(times))


def test_old_months_go_while_a_writer_keeps_inserting(months: Database):
    """A 30-day prune takes April's 3,000 entries (its partition dropped on PostgreSQL) and
    1 May's 200 (batches), while a writer keeps committing; kept entries and the writer's
    entries stay, and the audit record names the partition."""
    with Writer(months) as writer, months.session() as session:
        began = time.monotonic()
        deleted = drop_expired_entries(session, NOW, 30, batch=50)
        ended = time.monotonic()
    inserts, longest = writer.during(began, ended)
    print(f"writer completed {inserts} inserts during the prune ({ended - began:.3f} s)")
    assert deleted == 3200
    assert inserts >= 3, f"{inserts} inserts during a {ended - began:.2f} s prune"
    assert longest < 2.0, f"the writer waited {longest:.2f} s"
    written = {f"new-{n:05d}" for n in range(len(writer.committed))}
    assert ids(months) == {"kept-0", "kept-1"} | written
    with months.session() as session:
        after = session.scalars(
            select(AuditRecord.after).where(AuditRecord.action == "decision_log.pruned")
        ).one()
        if session.get_bind().dialect.name == "postgresql":
            # March and April, and any earlier month another test (a worker's sweep) prepared
            assert after["partitions_dropped"][-2:] == ["decisions_log_y2026m03", APRIL.name]
            left = partitions.months(session.connection())
            assert left and min(left).start == datetime(2026, 5, 1, tzinfo=UTC)
    assert after["deleted"] == 3200


@on_postgresql
def test_a_reader_holding_the_table_delays_the_drop_not_the_writer(months: Database):
    """A transaction that read the log holds the drop's lock for 3 s: the drop gives up
    after each short wait and tries again, so the writer never waits long, and the month
    goes once the reader ends."""
    reader = months.engine.connect()
    transaction = reader.begin()
    reader.execute(text("SELECT count(*) FROM decisions")).scalar()
    release = threading.Timer(3.0, transaction.rollback)
    with Writer(months) as writer, months.session() as session:
        release.start()
        began = time.monotonic()
        deleted = drop_expired_entries(session, NOW, 30, batch=50)
        ended = time.monotonic()
    release.join()
    reader.close()
    inserts, longest = writer.during(began, ended)
    print(f"writer: {inserts} inserts in {ended - began:.2f} s, longest wait {longest:.2f} s")
    assert ended - began >= 2.5  # it did wait for the reader
    assert deleted == 3200
    assert longest < 2.0, f"the writer waited {longest:.2f} s behind the drop"


@on_postgresql
def test_an_entry_without_its_month_is_stored_and_moves_when_the_month_comes(store: Database):
    """No partition for August: the entry lands in the default partition; preparing August
    moves it into August's partition, and retention still finds it."""
    august = datetime(2026, 8, 10, tzinfo=UTC)
    with store.session() as session:
        session.add(decision_record("early", august))
        session.commit()
        where = "SELECT tableoid::regclass::text FROM decisions WHERE id = 'early'"
        assert session.scalar(text(where)) == partitions.DEFAULT
        assert ensure_partitions(session, august, ahead=0) == ["decisions_log_y2026m08"]
        assert session.scalar(text(where)) == "decisions_log_y2026m08"
        assert drop_expired_entries(session, august + timedelta(days=60), 30) == 1
    assert ids(store) == set()


def test_preparing_partitions_twice_creates_nothing_more(store: Database):
    """The periodic task is idempotent: a second run finds the months there."""
    later = datetime(2031, 12, 31, 23, 59, tzinfo=UTC)  # a year no other test prepares
    with store.session() as session:
        first = ensure_partitions(session, later)
        assert ensure_partitions(session, later) == []
    expected = ["decisions_log_y2031m12", "decisions_log_y2032m01"]
    assert first == (expected if store.engine.dialect.name == "postgresql" else [])


def test_a_requests_decision_is_kept_and_a_bare_decision_is_not(session, runtime, people, clock):
    """Filing a request writes its decision kept; a decision asked for without a request is
    not. A prune a year on (on PostgreSQL, dropping the month's partition) takes only the
    latter, and the request still shows why it was granted."""
    ada = Actor("ada", Role.USER)
    ensure_partitions(session, clock(), ahead=0)
    request, _ = RequestService(session, runtime).create(
        ada, "scope-a-readers", "ada", None, RequestOptions(), now=clock()
    )
    asked = DecisionService(session, runtime).decide(
        ada, "scope-a-readers", "ada", None, RequestOptions(), now=clock()
    )
    assert session.get(DecisionRecord, asked.id).kept is False
    assert drop_expired_entries(session, clock() + timedelta(days=365), 30) >= 1
    session.expire_all()
    assert session.get(DecisionRecord, asked.id) is None
    evidence = session.get(DecisionRecord, request.decision_id)
    assert (evidence.kept, evidence.rule) == (True, request.rule)
