"""`policyd sod-report`: people who hold incompatible access now, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from policyd.cli import main
from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, load_bundle, load_texts
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.requests import RequestService
from policyd.services.versions import VersionService
from policyd.store import Database
from tests.conftest import POLICIES

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DECLARED = "  incompatibleWith: [payments-entry]\n"


def versions() -> tuple[dict[str, str], dict[str, str]]:
    """The example policies without quarter-end close's incompatibility, and with it plus
    payments entry incompatible with the Payments.Clerks group."""
    files = dict(load_bundle(POLICIES).files)
    before = {
        **files,
        "quarter-end-finance.yaml": files["quarter-end-finance.yaml"].replace(DECLARED, ""),
    }
    entry = files["payments-entry.yaml"].replace(
        "  resources:", "  incompatibleGroups: [Payments.Clerks]\n  resources:"
    )
    return before, {**files, "payments-entry.yaml": entry}


@pytest.fixture
def held(store: Database) -> str:
    """pat holds both finance packages and quinn holds payments entry and joined
    Payments.Clerks, all granted before the rules that forbid it were published."""
    before, after = versions()
    runtime = PolicyRuntime(load_texts(before))
    try:
        with store.session() as session:
            VersionService(session).publish(SYSTEM, before, message="before", now=NOW)
            directory = DirectoryService(session)
            for user in ("pat", "quinn"):
                body = {"department": "Finance", "job_title": "AP Clerk", "manager_id": "max"}
                directory.put_user(SYSTEM, user, body, now=NOW)
            for user in ("max", "carol"):
                directory.put_user(SYSTEM, user, {"department": "Finance"}, now=NOW)
            for group, user in (("Finance.Controllers", "carol"), ("Payments.Clerks", "quinn")):
                directory.put_group(SYSTEM, group, None, now=NOW)
                directory.add_member(SYSTEM, group, user, now=NOW)
            session.commit()
            requests = RequestService(session, runtime)
            for subject, package, approver in (
                ("pat", "payments-entry", "max"),
                ("pat", "quarter-end-close", "carol"),
                ("quinn", "payments-entry", "max"),
            ):
                request, _ = requests.create(
                    SYSTEM, package, subject, None, RequestOptions(), now=NOW
                )
                requests.decide_stage(
                    Actor(approver, Role.USER), request.id, "approve", comment=None, now=NOW
                )
            VersionService(session).publish(SYSTEM, after, message="SoD", now=NOW)
    finally:
        runtime.close()
    return store.url


def test_the_table_names_each_person_and_conflict(runner, held):
    """One line per conflict, then a count of conflicts and people under the active version."""
    result = runner.invoke(main, ["sod-report", "--database-url", held])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "subject",
        "package",
        "assignment",
        "conflicts",
        "with",
        "its",
        "assignment",
    ]
    assert lines[1].split()[:2] == ["pat", "payments-entry"]
    assert lines[1].split()[3] == "quarter-end-close"
    assert lines[2].split()[:2] == ["quinn", "payments-entry"]
    assert lines[2].split()[3:6] == ["group", "Payments.Clerks", "-"]
    version = load_texts(versions()[1]).version.id
    assert lines[-1] == f"2 conflicts, 2 people under version {version}"


def test_csv_has_a_header_and_a_row_per_conflict(runner, held):
    """--format csv: every field of the API's rows, for spreadsheets."""
    result = runner.invoke(main, ["sod-report", "--format", "csv", "--database-url", held])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["subject_id"], r["kind"], r["rule"]) for r in rows] == [
        ("pat", "package", "incompatible:quarter-end-close"),
        ("quinn", "group", "incompatible-group:Payments.Clerks"),
    ]
    assert rows[1]["other_assignment_id"] == ""


def test_json_is_a_list_of_the_api_rows(runner, held):
    """--format json prints the same fields as GET /v1/sod-violations."""
    result = runner.invoke(main, ["sod-report", "--format", "json", "--database-url", held])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["subject_id"] for r in rows] == ["pat", "quinn"]
    assert set(rows[0]) == {
        "subject_id",
        "package",
        "assignment_id",
        "kind",
        "conflicts_with",
        "other_assignment_id",
        "rule",
        "version",
        "reason",
    }
    assert "which are incompatible" in rows[0]["reason"]


def test_package_narrows_the_report_to_conflicts_it_is_part_of(runner, held):
    """--package quarter-end-close keeps pat's row and drops quinn's group conflict."""
    args = ["sod-report", "--package", "quarter-end-close", "--format", "json"]
    result = runner.invoke(main, [*args, "--database-url", held])
    assert result.exit_code == 0, result.output
    assert [r["subject_id"] for r in json.loads(result.output)] == ["pat"]


def test_exit_code_flags_violations(runner, held):
    """--exit-code exits 1 when anyone holds incompatible access."""
    result = runner.invoke(main, ["sod-report", "--exit-code", "--database-url", held])
    assert result.exit_code == 1
    assert "2 conflicts" in result.output


def test_no_conflicts_print_a_zero_count_and_exit_0(runner, store):
    """With nothing in conflict the report says so and --exit-code still exits 0."""
    with store.session() as session:
        VersionService(session).publish(SYSTEM, versions()[1], message="SoD", now=NOW)
    result = runner.invoke(main, ["sod-report", "--exit-code", "--database-url", store.url])
    assert result.exit_code == 0, result.output
    assert result.output.strip().startswith("0 conflicts, 0 people")


def test_without_an_active_version_the_report_says_to_publish(runner, store):
    """No version published: a clear message and exit 1, no traceback."""
    result = runner.invoke(main, ["sod-report", "--database-url", store.url])
    assert result.exit_code == 1
    assert "no policy version is active; publish one first" in result.output
    assert "Traceback" not in result.output
