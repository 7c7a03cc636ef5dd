"""`policyd worker`, `jobs` and `connectors` commands over a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from policyd.api import create_app
from policyd.api.context import components
from policyd.cli import main
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from policyd.store import Database
from policyd.store.models import Membership
from tests.conftest import POLICIES

READERS = "Group.ScopeA.Readers"  # what scope-a-readers grants through the directory


@pytest.fixture
def granted(tmp_path):
    """A SQLite database where ada was granted Scope A readers eight hours ago."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    start = datetime.now(UTC) - timedelta(hours=9)
    app = create_app(
        {
            "POLICYD_DATABASE_URL": url,
            "POLICYD_POLICIES": str(POLICIES),
            "POLICYD_CLOCK": lambda: start,
            "POLICYD_AUTO_UPGRADE": True,
        }
    )
    with components(app).database.session() as session:
        _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=start)
    headers = {"Authorization": f"Bearer {plain}"}
    client = app.test_client()
    client.put("/v1/users/ada", json={}, headers=headers)
    client.put("/v1/groups/Group.ScopeA.Readers.Eligible", json={}, headers=headers)
    client.put("/v1/groups/Group.ScopeA.Readers.Eligible/members/ada", headers=headers)
    response = client.post(
        "/v1/requests",
        json={"package": "scope-a-readers", "subject": {"id": "ada"}},
        headers=headers,
    )
    assert response.json["state"] == "delivered"
    components(app).runtime.close()
    components(app).database.dispose()
    return url


def test_worker_once_expires_access_and_revokes_it(runner, granted):
    """One sweep ends the expired assignment, taking the member out of the directory group
    in the same transaction (no revoke job), and sends the notices (the one of the grant,
    queued when it was delivered, and the one of the removal)."""
    result = runner.invoke(main, ["worker", "--once", "--database-url", granted])
    assert result.exit_code == 0, result.output
    assert "'expired': 1" in result.output and "'jobs': 2" in result.output
    listed = runner.invoke(main, ["jobs", "list", "--database-url", granted])
    kinds = [line.split()[2] for line in listed.output.splitlines() if " done " in line]
    assert "revoke" not in kinds and kinds.count("notify") == 2
    database = Database(granted)
    with database.session() as session:
        left = session.scalars(select(Membership.user_id).where(Membership.group_id == READERS))
        assert list(left) == []
    database.dispose()
    again = runner.invoke(main, ["worker", "--once", "--database-url", granted])
    assert "'expired': 0" in again.output


def test_jobs_retry_refuses_jobs_that_did_not_fail(runner, granted):
    """Retrying a job that is not failed exits 1 with the reason."""
    listed = runner.invoke(main, ["jobs", "list", "--database-url", granted])
    job_id = listed.output.split()[0]
    result = runner.invoke(main, ["jobs", "retry", job_id, "--database-url", granted])
    assert result.exit_code == 1
    assert "only failed jobs are retried" in result.output


def test_connectors_list_and_check(runner, granted, tmp_path):
    """The built-in directory is listed and healthy; a bad instances file is file:line errors."""
    listed = runner.invoke(main, ["connectors", "list"])
    assert listed.output.strip() == "directory  type directory"
    checked = runner.invoke(main, ["connectors", "check", "--database-url", granted])
    assert checked.exit_code == 0 and "ok   directory" in checked.output
    bad = tmp_path / "connectors.yaml"
    bad.write_text("apiVersion: policyd/v1\nconnectors:\n  - {name: x, type: nosuch}\n")
    result = runner.invoke(main, ["connectors", "list", "--connectors", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3: connectors[0].type: unknown type 'nosuch'" in result.output


def test_reconcile_reports_and_mends_drift(runner, granted):
    """`policyd reconcile` exits 1 on drift and `--fix` mends it."""
    from policyd.services.actor import SYSTEM
    from policyd.services.directory import DirectoryService
    from policyd.store import Database

    database = Database(granted)
    with database.session() as session:
        DirectoryService(session).remove_member(
            SYSTEM, "Group.ScopeA.Readers", "ada", now=datetime.now(UTC)
        )
        session.commit()
    database.dispose()
    found = runner.invoke(main, ["reconcile", "--database-url", granted])
    assert found.exit_code == 1
    assert "MISSING      directory:group:Group.ScopeA.Readers ada" in found.output
    fixed = runner.invoke(main, ["reconcile", "--fix", "--database-url", granted])
    assert fixed.exit_code == 0 and "1 difference(s) mended" in fixed.output
    clean = runner.invoke(main, ["reconcile", "--database-url", granted])
    assert clean.exit_code == 0 and "0 difference(s)" in clean.output


def test_worker_refuses_a_bad_reminder_offset(runner, granted):
    """`--reminders P1M` exits 2 naming the option and the offending offset."""
    result = runner.invoke(
        main, ["worker", "--once", "--reminders", "P14D,P1M", "--database-url", granted]
    )
    assert result.exit_code == 2
    assert "--reminders" in result.output and "'P1M'" in result.output


def test_worker_lists_its_periodic_tasks(runner):
    """`policyd worker --list-tasks` shows each task with its period and what it does,
    without a database."""
    result = runner.invoke(
        main, ["worker", "--list-tasks", "--interval", "7", "--decision-log-interval", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert "assignments.expire         every 7 s (--interval)" in result.output
    assert "decision-log.drain         every 0.5 s (own thread: decision-log)" in result.output
    assert "End every live assignment past its expires_at" in result.output
    assert "jobs.run-due" in result.output


def test_worker_once_exits_1_naming_a_task_that_failed(runner, granted, monkeypatch):
    """A task that fails in `--once` does not stop the others; the command names it and
    exits 1."""
    from policyd.services import external_users

    def broken(*args, **kwargs):
        raise RuntimeError("directory unreachable")

    monkeypatch.setattr(external_users, "sweep_external_users", broken)
    result = runner.invoke(main, ["worker", "--once", "--database-url", granted])
    assert result.exit_code == 1
    assert "task external-users.clean-up failed: RuntimeError: directory unreachable" in (
        result.output
    )
    assert "'expired': 1" in result.output  # the other tasks ran
