"""The alembic migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from policyd.store import Database
from policyd.store.models import AccessRequest, Base, StageApprover
from policyd.store.partitions import include_name, include_object
from tests.conftest import BACKENDS, fresh_database


def test_migrations_match_the_models(store: Database):
    """After `policyd db upgrade` autogenerate finds nothing to add, drop or change."""
    with store.engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": include_name,
                "include_object": include_object,
            },
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


@pytest.fixture(params=BACKENDS)
def empty(request, tmp_path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as url:
        database = Database(url)
        yield database
        database.dispose()


def test_waiting_requests_get_their_deadline_and_inbox(empty: Database):
    """Revisions 0005 and 0006 date the current stage of requests already waiting for an
    approver and put them in their approvers' inbox."""
    empty.upgrade("0004")
    started = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    stages = [
        {"approvers": ["bob", "cy"], "timeout_seconds": 3600, "started_at": started.isoformat()},
        {"approvers": ["cy"], "timeout_seconds": 7200, "started_at": None},
    ]
    with empty.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO decisions (id, at, package, subject_id, outcome, matched, reason,"
                " version, input, result, principal) VALUES ('d1', :at, 'p', 'ada',"
                " 'require_approval', '[]', 'r', 'v1', '{}', '{}', 'ada')"
            ),
            {"at": started},
        )
        for request_id, state in (("waiting", "pending_approval"), ("done", "approved")):
            connection.execute(
                text(
                    "INSERT INTO requests (id, package, subject_id, principal, state, stage,"
                    " stages, decision_id, version, reason, created_at, updated_at) VALUES"
                    " (:id, 'p', 'ada', 'ada', :state, 1, :stages, 'd1', 'v1', 'r', :at, :at)"
                ),
                {"id": request_id, "state": state, "stages": json.dumps(stages), "at": started},
            )
    empty.upgrade()
    with empty.session() as session:
        due = dict(session.execute(select(AccessRequest.id, AccessRequest.stage_due_at)).all())
        inbox = session.execute(select(StageApprover.request_id, StageApprover.user_id)).all()
    assert due == {"waiting": started + timedelta(hours=1), "done": None}
    assert sorted(inbox) == [("waiting", "bob"), ("waiting", "cy")]


def test_existing_audit_records_are_chained_and_new_ones_follow(empty: Database):
    """Revision 0010 chains the records written before it in id order, and records written
    after it extend that chain."""
    from policyd.services.actor import SYSTEM
    from policyd.services.audit import GENESIS, AuditService, audit

    empty.upgrade("0009")
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    with empty.engine.begin() as connection:
        for number in range(3):
            connection.execute(
                text(
                    "INSERT INTO audit (at, actor, action, object_type, object_id, after)"
                    " VALUES (:at, 'root', 'directory.user_created', 'user', :id, :after)"
                ),
                {"at": at, "id": f"u{number}", "after": json.dumps({"n": number, "é": "ü"})},
            )
    empty.upgrade()
    with empty.session() as session:
        audit(session, SYSTEM, "version.activated", ("policy_version", "v1"), now=at)
        session.commit()
        rows = list(AuditService(session).rows())
        report = AuditService(session).verify()
    assert [row["object_id"] for row in rows] == ["u0", "u1", "u2", "v1"]
    assert rows[0]["prev_hash"] == GENESIS and rows[3]["id"] == rows[2]["id"] + 1
    assert report.intact and report.records == 4


def test_versions_published_before_0011_have_an_unknown_git_state(empty: Database):
    """Revision 0011 adds git_dirty; versions stored before it keep NULL (not known)."""
    from alembic.script import ScriptDirectory

    from policyd.store.database import MIGRATIONS

    empty.upgrade(ScriptDirectory(str(MIGRATIONS)).get_revision("0011").down_revision)
    with empty.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO policy_versions (id, content_hash, files, git_commit, author,"
                " message, created_at, packages) VALUES ('v1', 'h1', '{}', 'abc', 'ann', 'm',"
                " :at, '[]')"
            ),
            {"at": datetime(2026, 1, 5, tzinfo=UTC)},
        )
    empty.upgrade()
    with empty.engine.connect() as connection:
        row = connection.execute(text("SELECT git_commit, git_dirty FROM policy_versions")).one()
    assert tuple(row) == ("abc", None)


def _downgrade(database: Database, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from policyd.store.database import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_entries_stored_before_0022_are_kept_when_referred_to_and_partitioned(empty: Database):
    """Revision 0022 copies the log with its rows: entries a request or an assignment refers
    to are kept (in the kept partition on PostgreSQL), the others land in their month's
    partition, retention then drops what is old, and a downgrade gives the rest back."""
    from policyd.services.decision_log import drop_expired_entries

    empty.upgrade("0021")
    with empty.engine.begin() as connection:
        for entry, at in (
            ("granted", "2026-01-05"),
            ("asked", "2026-02-10"),
            ("old", "2026-03-01"),
        ):
            connection.execute(
                text(
                    "INSERT INTO decisions (id, at, package, subject_id, outcome, matched,"
                    " reason, version, input, result, principal) VALUES (:id, :at, 'p', 'ada',"
                    " 'allow', '[]', 'r', 'v1', '{}', '{}', 'ada')"
                ),
                {"id": entry, "at": datetime.fromisoformat(at).replace(tzinfo=UTC)},
            )
        for request_id, entry in (("r1", "granted"), ("r2", "asked")):
            connection.execute(
                text(
                    "INSERT INTO requests (id, package, subject_id, principal, state, stages,"
                    " decision_id, version, reason, created_at, updated_at) VALUES (:id, 'p',"
                    " 'ada', 'ada', 'delivered', '[]', :entry, 'v1', 'r', :at, :at)"
                ),
                {"id": request_id, "entry": entry, "at": datetime(2026, 1, 5, tzinfo=UTC)},
            )
        connection.execute(
            text(
                "INSERT INTO assignments (id, subject_id, package, state, request_id,"
                " decision_id, version, starts_at) VALUES ('a1', 'ada', 'p', 'active', 'r1',"
                " 'granted', 'v1', :at)"
            ),
            {"at": datetime(2026, 1, 5, tzinfo=UTC)},
        )
    empty.upgrade()
    postgresql = empty.engine.dialect.name == "postgresql"
    with empty.engine.connect() as connection:
        kept = dict(connection.execute(text("SELECT id, kept FROM decisions")).all())
        if postgresql:
            where = dict(
                connection.execute(text("SELECT id, tableoid::regclass::text FROM decisions")).all()
            )
            assert where == {
                "granted": "decisions_kept",
                "asked": "decisions_kept",
                "old": "decisions_log_y2026m03",
            }
    assert kept == {"granted": True, "asked": True, "old": False}
    with empty.session() as session:
        assert drop_expired_entries(session, datetime(2026, 6, 1, tzinfo=UTC), 30) == 1
    _downgrade(empty, "0021")
    with empty.engine.connect() as connection:
        left = set(connection.scalars(text("SELECT id FROM decisions")))
    assert left == {"granted", "asked"}
    empty.upgrade()
