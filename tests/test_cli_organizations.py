"""`policyd organization list|configure|remove`: the proposed organisations an admin handles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from policyd.cli import main
from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, load_bundle
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.requests import RequestService
from policyd.store import Database
from policyd.store.models import Assignment, AuditRecord
from tests.conftest import POLICIES

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A database where raj, a guest of northwind.example, requested Merger collaboration
    (northwind.example proposed) and fab, a guest of the configured Fabrikam, holds it."""
    database = Database(f"sqlite:///{tmp_path / 'policyd.db'}")
    database.upgrade()
    runtime = PolicyRuntime(load_bundle(POLICIES))
    with database.session() as session:
        directory = DirectoryService(session)
        for user, email in (("raj", "raj@northwind.example"), ("fab", "fab@fabrikam.com")):
            directory.put_user(SYSTEM, user, {"email": email, "type": "guest"}, now=NOW)
        org = {"display_name": "Fabrikam", "domains": ["fabrikam.com"]}
        directory.put_organization(SYSTEM, "fabrikam", org, now=NOW)
        session.commit()
        for user in ("raj", "fab"):
            RequestService(session, runtime).create(
                Actor(user, Role.USER),
                "merger-collaboration",
                user,
                None,
                RequestOptions(),
                now=NOW,
            )
    yield str(database.engine.url)
    runtime.close()
    database.dispose()


def run(runner, *args: str):
    return runner.invoke(main, [*args], catch_exceptions=False)


def test_list_shows_the_proposed_organization(runner, url):
    result = run(runner, "organization", "list", "--state", "proposed", "--database-url", url)
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    assert line.startswith("northwind.example  proposed    northwind.example  domains: north")


def test_configure_sets_what_is_given_and_keeps_the_rest(runner, url):
    """The proposed organisation becomes configured with a name and sponsors; its domain
    stays; the change is audited with the actor given."""
    result = run(
        runner,
        "organization",
        "configure",
        "northwind.example",
        "--display-name",
        "Northwind",
        "--internal-sponsor",
        "olga",
        "--external-sponsor",
        "kim",
        "--actor",
        "alice",
        "--database-url",
        url,
    )
    assert result.exit_code == 0, result.output
    assert "configured  Northwind  domains: northwind.example" in result.output
    assert "internal sponsors: olga  external sponsors: kim" in result.output
    listed = run(runner, "organization", "list", "--state", "proposed", "--database-url", url)
    assert listed.output == ""
    with Database(url).session() as session:
        record = session.scalar(
            select(AuditRecord).where(AuditRecord.action == "directory.organization_updated")
        )
        assert (record.actor, record.after["state"]) == ("alice", "configured")


def test_remove_ends_the_guests_access(runner, url):
    result = run(runner, "organization", "remove", "fabrikam", "--database-url", url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("removed fabrikam: 1 guest(s), 1 assignment(s) ended")
    with Database(url).session() as session:
        states = session.scalars(select(Assignment.state).where(Assignment.subject_id == "fab"))
        assert list(states) == ["expiring"]  # the worker's revoke removes it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["remove", "nope"], "no connected organization 'nope'"),
        (["configure", "n", "--domain", "x" * 254], "a domain has at most 253 characters"),
        (["configure", "fabrikam", "--domain", "northwind.example"], "belongs to organization"),
        (["list", "--state", "removed"], "Invalid value for '--state'"),
    ],
)
def test_bad_input_fails_with_a_message(runner, url, args, message):
    result = runner.invoke(main, ["organization", *args, "--database-url", url])
    assert result.exit_code != 0
    assert message in result.output
