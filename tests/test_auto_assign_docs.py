"""docs/rules.md's auto-assignment example behaves as the page says; docs/lifecycle.md names
the audit actions the service writes; `policyd auto-assign preview` counts per package."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from policyd.cli import main
from policyd.domain import Subject, UserType
from policyd.rules import load_texts
from policyd.rules.auto_assign import AutoAssigner
from policyd.services.actor import SYSTEM
from policyd.services.directory import DirectoryService
from policyd.services.versions import VersionService
from policyd.store import Database
from tests.conftest import ROOT
from tests.test_docs import examples

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SERVICES = ROOT / "src" / "policyd" / "services"


def documented() -> str:
    (block,) = [b for b in examples() if "autoAssign:" in b]
    return block


def test_the_documented_rule_assigns_sales_members_who_are_not_excluded():
    bundle = load_texts({"sales-crm.yaml": documented()})
    assert bundle.packages["sales-crm"].auto_assign.grace == timedelta(days=7)
    with AutoAssigner(bundle) as assigner:
        assert assigner.matches(Subject("sam", department="Sales"), NOW) == {"sales-crm"}
        guest = Subject("gus", department="Sales", type=UserType.GUEST)
        excluded = Subject("eve", department="Sales", groups=frozenset({"CRM.Excluded"}))
        assert assigner.matches(guest, NOW) == frozenset()
        assert assigner.matches(excluded, NOW) == frozenset()


def test_the_lifecycle_page_names_the_audit_actions_the_service_writes():
    page = (ROOT / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    section = page.split("## Auto-assignment", 1)[1].split("\n## ", 1)[0]
    source = "".join(
        (SERVICES / name).read_text(encoding="utf-8")
        for name in ("auto_assignment.py", "auto_assign_rows.py")
    )
    # audit(session, SYSTEM, "<action>", ...), end_many(SYSTEM, ending, "<action>"), records
    written = set(
        re.findall(r'(?:SYSTEM,\s*(?:ending,\s*)?|"action": )"([a-z_]+\.[a-z_]+)"', source)
    )
    assert written == {
        "request.auto_assigned",
        "assignment.created",
        "assignment.auto_unmatched",
        "assignment.auto_matched",
        "assignment.auto_removed",
        "auto_assign.rules_changed",
    }
    assert all(f"`{action}`" in section for action in written)


def test_the_preview_command_counts_a_candidate_folder(runner, tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'policyd.db'}")
    database.upgrade()
    with database.session() as session:
        VersionService(session).publish(SYSTEM, {"a.yaml": documented()}, message="", now=NOW)
        directory = DirectoryService(session)
        for user, department in (("sam", "Sales"), ("max", "Sales"), ("ada", "Engineering")):
            directory.put_user(SYSTEM, user, {"department": department}, now=NOW)
        session.commit()
    folder = tmp_path / "candidate"
    folder.mkdir()
    (folder / "sales-crm.yaml").write_text(documented().replace("Sales\n", "Engineering\n", 1))
    url = ["--database-url", str(database.engine.url)]
    active = runner.invoke(main, ["auto-assign", "preview", "--format", "json", *url])
    assert active.exit_code == 0, active.output
    assert json.loads(active.output)["packages"][0]["would_add"] == 2
    changed = runner.invoke(
        main, ["auto-assign", "preview", "--version", str(folder), "--exit-code", *url]
    )
    assert changed.exit_code == 1, changed.output
    assert re.search(r"sales-crm\s+1\s+0\s+0\s+0\s+P7D", changed.output)
    database.dispose()
