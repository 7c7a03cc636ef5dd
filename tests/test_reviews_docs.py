"""docs/reviews.md shows real behaviour: its rule files load, its mistakes give the errors it
prints, and its `policyd review` session prints what the page shows (ids and times aside)."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policyd.cli import main
from policyd.connectors.config import Connectors, load_instances
from policyd.rules import ProblemsError, load_texts
from policyd.rules.review import find_scope
from policyd.services.memberships import DirectoryMemberships
from policyd.services.reviews import ReviewService
from policyd.store import Database
from policyd.store.models import ReviewCampaign, ReviewItem
from tests.conftest import ROOT
from tests.review_support import make_world

DOC = ROOT / "docs" / "reviews.md"
BLOCK = re.compile(r"```(yaml|text|console)\n(.*?)```", re.DOTALL)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def blocks(kind: str) -> list[str]:
    return [text for found, text in BLOCK.findall(DOC.read_text(encoding="utf-8")) if found == kind]


def test_the_rule_files_on_the_page_load_together():
    files = [b for b in blocks("yaml") if b.startswith("apiVersion")]
    bundle = load_texts({f"e{i}.yaml": text for i, text in enumerate(files)})
    assert [r.id for r in bundle.packages["crm-support"].reviews] == ["quarterly"]
    assert len(bundle.packages["partner-portal"].reviews[0].recommendations) == 2
    scope = find_scope(bundle, "catalog:sales", "half-yearly")
    assert (scope.packages, scope.owners) == (("sales-reports",), ("group:Sales.Ops",))
    assert scope.review.fallback == ("owners",)


@pytest.mark.parametrize("fix", [False, True])
def test_the_mistakes_on_the_page_give_the_errors_it_shows(fix):
    """The broken reviews block, put in the first file, fails as the page says; with
    `boss` corrected the overlap is the next error shown."""
    complete, fragment = blocks("yaml")[0], blocks("yaml")[1]
    broken = complete[: complete.index("  reviews:\n")] + fragment
    if fix:
        broken = broken.replace("[boss]", "[manager]")
    with pytest.raises(ProblemsError) as refused:
        load_texts({"crm-support.yaml": broken})
    assert [str(p) for p in refused.value.problems] == [blocks("text")[int(fix)].strip()]


def normalised(text: str, version: str) -> str:
    """Real ids as the page's (in order of first appearance), times and version as shown."""
    ids: dict[str, str] = {}
    for found in UUID.findall(text):
        ids.setdefault(found, f"0194a1b2-0000-7000-8000-{len(ids) + 1:012d}")
    text = UUID.sub(lambda m: ids[m.group(0)], text)
    text = MOMENT.sub("2026-01-05T09:00:00+00:00", text)
    return text.replace(version, "000000000000")


@pytest.fixture
def store(tmp_path: Path):
    """The page's session runs on the embedded database (SQLite) of its own."""
    database = Database(f"sqlite:///{tmp_path / 'policyd.db'}")
    database.upgrade()
    yield database
    database.dispose()


def test_the_command_line_session_prints_what_the_page_shows(store: Database, runner):
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    world = make_world(store, connectors, blocks("yaml")[0])
    try:
        world.people({"max": {}, "pat": {"manager_id": "max"}, "sue": {"manager_id": "max"}})
        world.grant("crm-support", "pat", "sue")
        with store.session() as session:
            assert ReviewService(session, world.runtime).open_due(now=NOW) == 1
            campaign = session.query(ReviewCampaign).one().id
            item = session.query(ReviewItem).filter_by(subject_id="pat").one().id
        version = world.runtime.active.version
    finally:
        connectors.close()
        world.runtime.close()
    (session_block,) = blocks("console")
    shown, printed = [], []
    for chunk in session_block.split("$ ")[1:]:
        command, _, output = chunk.partition("\n")
        shown.append(output)
        line = command.replace("$ITEM", item).replace("$CAMPAIGN", campaign)
        args = [*shlex.split(line)[1:], "--database-url", str(store.engine.url)]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        printed.append(result.output)
    assert normalised("\0".join(printed), version).split("\0") == shown
