"""`policyd review sweep` runs the periodic review steps under the active version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from policyd.cli import main
from policyd.connectors.config import Connectors, load_instances
from policyd.services.actor import SYSTEM
from policyd.services.memberships import DirectoryMemberships
from policyd.services.versions import VersionService
from policyd.store import Database
from policyd.store.models import Assignment
from tests.review_support import NOW, World, make_world, reviewed_package


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """crm published as the active version; pat holds it, max is pat's manager."""
    database = Database(f"sqlite:///{tmp_path / 'policyd.db'}")
    database.upgrade()
    connectors = Connectors(load_instances(None), DirectoryMemberships(database.session))
    made = make_world(database, connectors, reviewed_package())
    with database.session() as session:
        VersionService(session).publish(
            SYSTEM, made.runtime.active.bundle.files, message="crm", now=NOW
        )
    made.people({"max": {}, "pat": {"manager_id": "max"}})
    made.grant("crm", "pat")
    yield made
    connectors.close()
    made.runtime.close()
    database.dispose()


def sweep(runner, world: World, at: str):
    url = str(world.database.engine.url)
    return runner.invoke(main, ["review", "sweep", "--at", at, "--database-url", url])


def test_a_sweep_opens_the_due_campaign_once(runner, world):
    first = sweep(runner, world, "2026-01-05T09:00:00Z")
    assert first.exit_code == 0, first.output
    assert first.output.startswith("opened 1 campaign(s), queued 0 reminder(s), closed 0")
    again = sweep(runner, world, "2026-01-06T09:00:00Z")
    assert again.output.startswith("opened 0 campaign(s), queued 0 reminder(s), closed 0")


def test_a_sweep_after_the_end_removes_unreviewed_access(runner, world):
    """Remove on no response: pat's access is ending once the campaign closes."""
    sweep(runner, world, "2026-01-05T09:00:00Z")
    reminded = sweep(runner, world, "2026-01-08T00:00:00Z")
    assert "queued 1 reminder(s)" in reminded.output  # max, seven days before the end
    ended = sweep(runner, world, "2026-01-15T00:01:00Z")
    assert ended.exit_code == 0 and "closed 1 campaign(s)" in ended.output
    with world.session() as session:
        assert session.query(Assignment).one().state == "expiring"


def test_a_sweep_without_an_active_version_fails(runner, tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    database.upgrade()
    database.dispose()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = runner.invoke(main, ["review", "sweep", "--database-url", url])
    assert result.exit_code == 1
    assert "no policy version is active" in result.output
