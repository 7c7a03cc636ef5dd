"""The audit trail is one hash chain: written at commit, verified record by record."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from policyd import logs
from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, load_bundle
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.audit import GENESIS, AuditService, audit, audit_many, record_hash
from policyd.services.directory import DirectoryService
from policyd.services.requests import RequestService
from policyd.services.versions import VersionService
from policyd.store import Database
from policyd.store.models import AuditRecord
from tests.conftest import POLICIES

ROOT = Actor("root", Role.ADMIN)
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def write_users(store: Database, count: int, prefix: str = "u") -> None:
    """`count` directory changes, each in its own transaction, through the service."""
    for number in range(count):
        with store.session() as session:
            DirectoryService(session).put_user(
                ROOT, f"{prefix}{number}", {"department": f"d{number}"}, now=NOW
            )
            session.commit()


def verify(store: Database, **kwargs):
    with store.session() as session:
        return AuditService(session).verify(**kwargs)


def broken_ids(store: Database, **kwargs) -> list[int]:
    return [record_id for record_id, _ in verify(store, **kwargs).problems]


def test_records_form_a_chain_from_genesis(store: Database):
    """Each record's prev_hash is the hash of the one before it, the first's is GENESIS, and
    each hash is the sha256 of its canonical content."""
    write_users(store, 3)
    with store.session() as session:
        rows = list(AuditService(session).rows())
    assert [row["id"] for row in rows] == [1, 2, 3]
    assert [row["prev_hash"] for row in rows] == [GENESIS, rows[0]["hash"], rows[1]["hash"]]
    assert all(record_hash(row) == row["hash"] for row in rows)
    report = verify(store)
    assert report.intact and report.records == 3 and report.anchor == f"{rows[2]['hash']}@3"


def test_an_edited_record_is_named(store: Database):
    """Changing one column of one record makes verify fail at exactly that record."""
    write_users(store, 5)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit SET actor = 'mallory' WHERE id = 3"))
    report = verify(store)
    assert not report.intact
    assert report.problems == [(3, "content does not match its hash (edited or moved)")]


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(store: Database):
    """Rehashing an edited record does not help: the next record no longer follows it."""
    write_users(store, 5)
    with store.session() as session:
        row = next(r for r in AuditService(session).rows() if r["id"] == 3)
    row["actor"] = "mallory"
    with store.engine.begin() as connection:
        connection.execute(
            text("UPDATE audit SET actor = 'mallory', hash = :h WHERE id = 3"),
            {"h": record_hash(row)},
        )
    assert broken_ids(store) == [4]
    assert "record 3" in verify(store).problems[0][1]


def test_a_deleted_record_is_named_by_the_one_after_it(store: Database):
    """Deleting a record breaks the link of the record that followed it."""
    write_users(store, 5)
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit WHERE id = 2"))
    report = verify(store)
    assert [record_id for record_id, _ in report.problems] == [3]
    assert "prev_hash does not match the hash of record 1" in report.problems[0][1]


def test_deleting_the_first_record_is_seen(store: Database):
    """The chain starts at GENESIS: a deleted first record is noticed too."""
    write_users(store, 3)
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit WHERE id = 1"))
    assert broken_ids(store) == [2]


def test_an_inserted_record_is_named(store: Database):
    """A record slipped into the chain (here after the tail, with a made-up hash) is named."""
    write_users(store, 3)
    with store.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit (id, at, actor, action, object_type, object_id, prev_hash,"
                " hash) VALUES (4, :at, 'mallory', 'directory.user_created', 'user', 'x',"
                " :prev, :hash)"
            ),
            {"at": NOW, "prev": "1" * 64, "hash": "2" * 64},
        )
    report = verify(store)
    assert [record_id for record_id, _ in report.problems] == [4, 4]


def test_swapped_records_are_named(store: Database):
    """Swapping the ids of two records (reordering them) breaks the chain at the first."""
    write_users(store, 5)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit SET id = -1 WHERE id = 2"))
        connection.execute(text("UPDATE audit SET id = 2 WHERE id = 3"))
        connection.execute(text("UPDATE audit SET id = 3 WHERE id = -1"))
    ids = broken_ids(store)
    assert ids[0] == 2 and set(ids) <= {2, 3, 4}


def test_an_anchor_proves_the_chain_up_to_it(store: Database):
    """From an anchor the walk starts at its record; a rewritten or missing anchor record
    is a break."""
    write_users(store, 4)
    with store.session() as session:
        anchor = next(r for r in AuditService(session).rows() if r["id"] == 2)
    report = verify(store, anchor=(anchor["hash"], 2))
    assert report.intact and (report.first_id, report.records) == (2, 3)
    assert broken_ids(store, anchor=("f" * 64, 2)) == [2]
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit WHERE id <= 2"))
    assert verify(store, anchor=(anchor["hash"], 2)).problems == [
        (2, "the anchor's record is missing (deleted)")
    ]


def test_a_rolled_back_transaction_leaves_no_record(store: Database):
    """Records wait for the commit: a rollback drops them, and the chain stays whole."""
    with store.session() as session:
        DirectoryService(session).put_user(ROOT, "gone", {}, now=NOW)
        session.rollback()
        DirectoryService(session).put_user(ROOT, "kept", {}, now=NOW)
        session.commit()
    with store.session() as session:
        assert list(session.scalars(select(AuditRecord.object_id))) == ["kept"]
    assert verify(store).intact


def test_bulk_records_are_chained_in_order(store: Database):
    """audit_many chains its records in the order given, after single records before them."""
    with store.session() as session:
        audit(session, ROOT, "one", ("thing", "a"), now=NOW)
        audit_many(
            session,
            ROOT,
            NOW + timedelta(seconds=1),
            [{"action": "many", "object": ("thing", str(n)), "after": {"n": n}} for n in range(50)],
        )
        session.commit()
    with store.session() as session:
        rows = list(AuditService(session).rows(batch=7))
    assert [row["object_id"] for row in rows] == ["a", *map(str, range(50))]
    assert verify(store).intact


def test_the_request_id_is_recorded_and_hashed(store: Database):
    """A record written while a request id is set carries it, and it is part of the hash."""
    token = logs.request_id.set("req-42")
    try:
        write_users(store, 1)
    finally:
        logs.request_id.reset(token)
    write_users(store, 1, prefix="v")
    with store.session() as session:
        assert list(session.scalars(select(AuditRecord.request_id).order_by(AuditRecord.id))) == [
            "req-42",
            None,
        ]
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit SET request_id = 'forged' WHERE id = 1"))
    assert broken_ids(store) == [1]


def test_parallel_writers_form_one_chain(store: Database):
    """Threads making directory changes at once, each in its own transactions, leave one
    verifiable chain with every change in it (PostgreSQL: the advisory lock; SQLite: its
    one writer at a time)."""
    threads, each = 6, 15
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(number: int) -> None:
        try:
            start.wait()
            write_users(store, each, prefix=f"t{number}-")
        except BaseException as err:  # reported below
            errors.append(err)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    report = verify(store)
    assert report.intact and report.records == threads * each
    assert (report.first_id, report.last_id) == (1, threads * each)


def test_parallel_approvals_and_directory_writes_form_one_chain(store: Database):
    """Approvals (which lock their request and create assignments) racing directory writes
    leave one intact chain holding every change: the chain lock, taken last, deadlocks with
    no row lock."""
    runtime = PolicyRuntime()
    bundle = load_bundle(POLICIES)
    with store.session() as session:
        VersionService(session).publish(SYSTEM, bundle.files, message="examples", now=NOW)
        directory = DirectoryService(session)
        directory.put_group(SYSTEM, "Group.ScopeA.Approvers", None, now=NOW)
        for user in ["bob", *(f"r{n}" for n in range(12))]:
            directory.put_user(SYSTEM, user, {}, now=NOW)
        directory.add_member(SYSTEM, "Group.ScopeA.Approvers", "bob", now=NOW)
        session.commit()
    runtime.activate(bundle)
    pending = []
    for number in range(12):
        with store.session() as session:
            request, _ = RequestService(session, runtime).create(
                Actor(f"r{number}", Role.USER),
                "scope-a-readers",
                f"r{number}",
                None,
                RequestOptions(),
                now=NOW,
            )
            pending.append(request.id)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def approve(ids: list[str]) -> None:
        try:
            start.wait()
            for request_id in ids:
                with store.session() as session:
                    RequestService(session, runtime).decide_stage(
                        Actor("bob", Role.USER), request_id, "approve", comment=None, now=NOW
                    )
        except BaseException as err:  # reported below
            errors.append(err)

    def edit_directory() -> None:
        try:
            start.wait()
            write_users(store, 12, prefix="x")
        except BaseException as err:
            errors.append(err)

    workers = [threading.Thread(target=approve, args=(pending[n::3],)) for n in range(3)]
    workers.append(threading.Thread(target=edit_directory))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    runtime.close()
    assert errors == []
    with store.session() as session:
        approved = AuditService(session).list(action="request.approved", limit=100)[1]
        created = AuditService(session).list(action="directory.user_created", limit=100)[1]
    assert (approved, created) == (12, 1 + 12 + 12)
    assert verify(store).intact


def test_an_anchor_beyond_any_record_id_is_a_missing_record(store: Database):
    """An anchor naming an id no record can have is reported missing, on every database."""
    write_users(store, 1)
    assert verify(store, anchor=("a" * 64, 10**15)).problems == [
        (10**15, "the anchor's record is missing (deleted)")
    ]
