"""Directory imports: JSON and CSV files parsed with every problem's line, checked across
entries, applied all-or-nothing with counts."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from policyd.rules import ProblemsError
from policyd.services.directory import DirectoryService
from policyd.services.directory_import import (
    check_directory,
    import_directory,
    parse_csv_directory,
    parse_json_directory,
)
from policyd.store.models import AuditRecord, User
from tests.services.conftest import ROOT

FILE = {
    "organizations": [{"id": "partner", "display_name": "Partner", "domains": ["Partner.example"]}],
    "users": [
        {"id": "ann", "email": "ann@contoso.com", "department": "Finance"},
        {"id": "ben", "manager_id": "ann"},
    ],
    "groups": [{"id": "Finance.All", "display_name": "Finance", "members": ["ann", "ben"]}],
}


def as_json(data) -> str:
    return json.dumps(data, indent=2)


def run(session, text: str, clock, parse=parse_json_directory):
    return import_directory(parse(text, "dir.json"), session, ROOT, now=clock())


def counts(result) -> dict[str, dict[str, int]]:
    return {kind: dict(counter) for kind, counter in result.items() if counter}


def test_a_json_file_creates_everything_audited(session, clock):
    """Organisations, users, groups and memberships are created and counted, each audited."""
    result = run(session, as_json(FILE), clock)
    assert counts(result) == {
        "organizations": {"created": 1},
        "users": {"created": 2},
        "groups": {"created": 1},
        "memberships": {"added": 2},
    }
    assert DirectoryService(session).members("Finance.All")[0] == ["ann", "ben"]
    org = DirectoryService(session).get_organization("partner")
    assert org.domains == ["partner.example"]
    audited = session.scalar(select(func.count()).select_from(AuditRecord))
    assert audited >= 6


def test_importing_the_same_file_again_changes_nothing(session, clock):
    """A second import finds every entry unchanged and writes no audit record."""
    run(session, as_json(FILE), clock)
    before = session.scalar(select(func.count()).select_from(AuditRecord))
    result = run(session, as_json(FILE), clock)
    assert counts(result) == {
        "organizations": {"unchanged": 1},
        "users": {"unchanged": 2},
        "groups": {"unchanged": 1},
        "memberships": {"unchanged": 2},
    }
    assert session.scalar(select(func.count()).select_from(AuditRecord)) == before


def test_a_user_not_enabled_leaves_and_comes_back(session, clock):
    """account_enabled false disables ben (a leaver); true again enables him."""
    run(session, as_json(FILE), clock)
    gone = {**FILE, "users": [FILE["users"][0], {**FILE["users"][1], "account_enabled": False}]}
    assert run(session, as_json(gone), clock)["users"]["disabled"] == 1
    assert session.get(User, "ben").state == "disabled"
    assert run(session, as_json(FILE), clock)["users"]["enabled"] == 1
    assert session.get(User, "ben").state == "active"


def test_a_user_given_again_is_replaced_whole(session, clock):
    """A field left out of the import is cleared: ann's department goes."""
    run(session, as_json(FILE), clock)
    changed = {"users": [{"id": "ann", "email": "ann@contoso.com"}]}
    assert counts(run(session, as_json(changed), clock))["users"] == {"updated": 1}
    assert session.get(User, "ann").department is None


def test_a_group_without_a_display_name_keeps_its_name(session, clock):
    run(session, as_json(FILE), clock)
    again = {"groups": [{"id": "Finance.All"}]}
    assert counts(run(session, as_json(again), clock))["groups"] == {"unchanged": 1}
    assert DirectoryService(session).get_group("Finance.All").display_name == "Finance"


def test_problems_name_their_line_and_nothing_is_written(session, clock):
    """An unknown field, a duplicate id and a member nobody knows: every problem, with its
    line, and not one user stored."""
    bad = {
        "users": [{"id": "ann", "colour": "red"}, {"id": "ben"}, {"id": "ben"}],
        "groups": [{"id": "G", "members": ["nobody"]}],
    }
    text = as_json(bad)
    with pytest.raises(ProblemsError) as err:
        run(session, text, clock)
    found = {(p.line, p.message) for p in err.value.problems}
    lines = text.splitlines()
    colour = next(n for n, line in enumerate(lines, 1) if '"colour"' in line)
    assert any(line == colour for line, _ in found)
    assert any("duplicate user id 'ben'" in message for _, message in found)
    assert any("no user 'nobody'" in message for _, message in found)
    assert session.scalar(select(func.count()).select_from(User)) == 0


def test_text_that_is_not_json_is_one_problem(session):
    parsed = parse_json_directory('{"users": [', "dir.json")
    (problem,) = parsed.problems
    assert problem.message.startswith("invalid JSON") and problem.file == "dir.json"


def test_an_unknown_top_level_key_is_a_problem():
    (problem,) = parse_json_directory(as_json({"people": []}), "dir.json").problems
    assert problem.where == "people"


def test_a_member_already_in_the_directory_needs_no_entry(session, people):
    """check_directory accepts a member the file does not list but the directory holds."""
    parsed = parse_json_directory(as_json({"groups": [{"id": "G", "members": ["ada"]}]}), "f")
    assert check_directory(parsed, DirectoryService(session)) == []


CSV = """id,email,groups,costCentre,account_enabled
ann,ann@contoso.com,Finance.All;Finance.AP,CC-1,
ben,,Finance.All,,true
"""


def test_a_csv_file_maps_columns_groups_and_attributes(session, clock):
    """Known columns are fields, `groups` makes memberships, others become attributes."""
    result = run(session, CSV, clock, parse_csv_directory)
    assert counts(result)["memberships"] == {"added": 3}
    ann = session.get(User, "ann")
    assert (ann.email, ann.attributes) == ("ann@contoso.com", {"costCentre": "CC-1"})
    assert DirectoryService(session).members("Finance.AP")[0] == ["ann"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty file: expected a header row"),
        ("email\nx@y.z\n", 1, "missing column"),
        ("id,id\nann,ann\n", 1, "duplicate column"),
        ("id,email\nann,ann@contoso.com\nben\n", 3, "1 cells, but the header has 2"),
    ],
    ids=["empty", "no-id", "duplicate-column", "short-row"],
)
def test_csv_problems_name_their_line(text, line, message):
    problems = parse_csv_directory(text, "dir.csv").problems
    assert (problems[0].line, problems[0].message) == (line, message)
