"""`policyd diff OLD [NEW]` over folders, git revisions and published versions."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from policyd.cli import main
from policyd.store import Database
from tests.conftest import POLICIES

DENY_RULE = """\
    - id: no-contractors
      when: {subject.employeeType: contractor}
      then: {decision: deny, reason: Contractors cannot read Scope A}

"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True)


def jit_change(folder: Path) -> None:
    """The acceptance edit: Scope A readers at 4 hours instead of 8, and a deny rule."""
    rules = folder / "scope-a-readers.yaml"
    text = rules.read_text().replace("duration: PT8H, max: PT8H", "duration: PT4H, max: PT4H")
    rules.write_text(text.replace("  rules:\n", "  rules:\n" + DENY_RULE, 1))


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    """A git repository (the current folder) with the examples committed in policies/ and
    the acceptance edit left uncommitted."""
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.name", "Gov")
    git(tmp_path, "config", "user.email", "gov@contoso.com")
    shutil.copytree(POLICIES, tmp_path / "policies")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "examples")
    jit_change(tmp_path / "policies")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def diff_json(runner, *args: str) -> dict:
    result = runner.invoke(main, ["diff", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_exactly_the_jit_change(result: dict) -> None:
    assert result["effective"] is True
    (package,) = result["packages"]
    assert (package["id"], package["change"]) == ("scope-a-readers", "changed")
    assert [(f["field"], f["before"], f["after"]) for f in package["fields"]] == [
        ("lifetime", {"duration": "PT8H", "max": "PT8H"}, {"duration": "PT4H", "max": "PT4H"})
    ]
    assert [(r["id"], r["change"]) for r in package["rules"]] == [("no-contractors", "added")]
    assert package["resources"] == []


def test_diff_of_two_folders_shows_exactly_the_two_changes(runner, tmp_path):
    """Acceptance: the JIT package at 4 h plus a deny rule is exactly a lifetime change and an
    added rule, in text and in JSON."""
    new = tmp_path / "new"
    shutil.copytree(POLICIES, new)
    jit_change(new)
    assert_exactly_the_jit_change(diff_json(runner, str(POLICIES), str(new)))
    text = runner.invoke(main, ["diff", str(POLICIES), str(new)]).stdout.splitlines()
    assert text[2:] == [
        f"~ package scope-a-readers ({new}/scope-a-readers.yaml)",
        "    lifetime: {duration: PT8H, max: PT8H} -> {duration: PT4H, max: PT4H}",
        "  + rule no-contractors (line 12)",
        "      priority: 0",
        "      when: {subject.employeeType: {eq: contractor}}",
        "      decision: deny",
        "      reason: Contractors cannot read Scope A",
        "1 package changed, 1 field changed, 1 rule added",
    ]


def test_a_bare_revision_reads_the_policies_folder_at_that_commit(runner, repo):
    """`policyd diff HEAD` compares policies/ at HEAD with the work tree's policies/."""
    result = diff_json(runner, "HEAD")
    assert_exactly_the_jit_change(result)
    assert result["old"].startswith("HEAD:policies (") and result["new"].startswith("policies (")


def test_a_revision_with_a_path_reads_that_path_from_the_top(runner, repo, monkeypatch):
    """REV:PATH names a folder from the repository's top, whatever the current folder."""
    monkeypatch.chdir(repo / "policies" / "tests")
    assert_exactly_the_jit_change(diff_json(runner, "HEAD:policies", str(repo / "policies")))


def test_exit_code_is_one_with_changes_and_zero_without(runner, repo):
    """--exit-code: 1 when something effective changed, 0 when nothing did."""
    assert runner.invoke(main, ["diff", "HEAD", "--exit-code"]).exit_code == 1
    git(repo, "commit", "-q", "-am", "4 hours")
    reformatted = repo / "policies" / "payments-entry.yaml"
    reformatted.write_text("# a comment\n" + reformatted.read_text().replace(": ", ":   "))
    result = runner.invoke(main, ["diff", "HEAD", "--exit-code"])
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("no effective change\n")
    assert runner.invoke(main, ["diff", "HEAD"]).exit_code == 0  # without --exit-code


def test_rules_that_do_not_load_are_file_line_errors_and_exit_two(runner, repo):
    """A broken side prints its problems as REV:path/file:line and exits 2, not 1."""
    (repo / "policies" / "broken.yaml").write_text("apiVersion: policyd/v1\npackage: {id: x}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "broken")
    result = runner.invoke(main, ["diff", "HEAD~1", "HEAD"])
    assert result.exit_code == 2
    assert "HEAD:policies/broken.yaml:2: package.displayName: required key is missing" in (
        result.stderr
    )
    assert "cannot compare rules that do not load" in result.stderr


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("HEAD:nowhere", "HEAD:nowhere is not a folder of that revision"),
        ("no-such-branch:policies", "'no-such-branch' is not a git revision here"),
        ("--output=x", "'--output=x' is not a folder or a git revision"),
    ],
)
def test_a_side_that_names_nothing_is_a_clear_error(runner, repo, tmp_path, ref, message):
    """Unknown revisions, paths and ids exit 2 with a message naming them."""
    missing = tmp_path / "none.db"
    result = runner.invoke(main, ["diff", "--database-url", f"sqlite:///{missing}", "--", ref])
    assert result.exit_code == 2
    assert message in result.stderr
    assert not missing.exists()


def test_published_versions_are_compared_by_id(runner, store: Database, tmp_path):
    """Two version ids from the database diff like the folders they were published from."""
    url = store.engine.url.render_as_string(hide_password=False)
    new = tmp_path / "new"
    shutil.copytree(POLICIES, new)
    jit_change(new)
    ids = []
    for folder in (POLICIES, new):
        result = runner.invoke(main, ["publish", str(folder), "-m", "m", "--database-url", url])
        assert result.exit_code == 0, result.output
        ids.append(runner.invoke(main, ["bundle-id", str(folder), "--json"]).stdout)
    old_id, new_id = (json.loads(i)["id"] for i in ids)
    result = diff_json(runner, old_id, new_id, "--database-url", url)
    assert_exactly_the_jit_change(result)
    assert (result["old"], result["new"]) == (f"version {old_id}", f"version {new_id}")
    unknown = runner.invoke(main, ["diff", old_id, "feedfeedfeed", "--database-url", url])
    assert unknown.exit_code == 2
    assert "'feedfeedfeed' is not a folder, a git revision or a published version" in (
        unknown.stderr
    )


def test_markdown_output_is_a_table_per_package(runner, repo):
    """--format markdown gives a heading, the summary and one row per change."""
    result = runner.invoke(main, ["diff", "HEAD", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "### Policy diff"
    assert lines[2].endswith("**1 package changed, 1 field changed, 1 rule added**")
    rows = [line for line in lines if line.startswith("| changed") or line.startswith("| added")]
    assert len(rows) == 2


def test_outside_a_git_repository_a_bare_name_is_looked_up_as_a_version(
    runner, store: Database, tmp_path, monkeypatch
):
    """Where git finds no repository, OLD is still read as a version id from the database."""
    url = store.engine.url.render_as_string(hide_password=False)
    result = runner.invoke(main, ["publish", str(POLICIES), "-m", "m", "--database-url", url])
    assert result.exit_code == 0, result.output
    version_id = json.loads(runner.invoke(main, ["bundle-id", str(POLICIES), "--json"]).stdout)[
        "id"
    ]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    result = runner.invoke(
        main, ["diff", version_id, str(POLICIES), "--exit-code", "--database-url", url]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("no effective change\n")


def test_active_names_the_version_the_service_decides_with(runner, store: Database, tmp_path):
    """`policyd diff active DIR` compares the active version with a folder; with nothing
    active it is a clear error, exit 2."""
    url = store.engine.url.render_as_string(hide_password=False)
    empty = runner.invoke(main, ["diff", "active", str(POLICIES), "--database-url", url])
    assert empty.exit_code == 2
    assert "no policy version is active in the database" in empty.stderr
    result = runner.invoke(main, ["publish", str(POLICIES), "-m", "m", "--database-url", url])
    assert result.exit_code == 0, result.output
    new = tmp_path / "new"
    shutil.copytree(POLICIES, new)
    jit_change(new)
    result = diff_json(runner, "active", str(new), "--database-url", url)
    assert_exactly_the_jit_change(result)
    assert result["old"].startswith("active version ")


def test_catalog_changes_show_in_every_format(runner, tmp_path):
    """Sales' owners changed and scope-a-readers moved from engineering to sales: JSON, text
    and Markdown name the catalogs, their owners and the move."""
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(POLICIES, old)
    shutil.copytree(POLICIES, new)
    catalogs = new / "catalogs.yaml"
    catalogs.write_text(catalogs.read_text().replace('"group:Sales.Ops"', '"user:sam"'))
    readers = new / "scope-a-readers.yaml"
    readers.write_text(readers.read_text().replace("catalog: engineering", "catalog: sales"))
    found = diff_json(runner, str(old), str(new))
    assert [(c["id"], c["joined"], c["left"]) for c in found["catalogs"]] == [
        ("engineering", [], ["scope-a-readers"]),
        ("sales", ["scope-a-readers"], []),
    ]
    assert found["catalogs"][1]["fields"] == [
        {"field": "owners", "before": ["group:Sales.Ops"], "after": ["user:sam"]}
    ]
    assert found["summary"]["catalogs"] == {"added": 0, "removed": 0, "changed": 2}
    text = runner.invoke(main, ["diff", str(old), str(new)]).stdout
    assert f"~ catalog sales ({new / 'catalogs.yaml'})\n" in text
    assert "    owners: ['group:Sales.Ops'] -> ['user:sam']\n  + package scope-a-readers\n" in text
    markdown = runner.invoke(main, ["diff", str(old), str(new), "--format", "markdown"]).stdout
    assert "| left | package `scope-a-readers` | | |" in markdown
