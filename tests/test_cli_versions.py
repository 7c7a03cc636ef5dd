"""`policyd versions list/show/activate`, `policyd bundle-id`, and the git state recorded by
`policyd publish`, on every database backend."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from policyd.cli import main
from policyd.store import Database
from policyd.store.models import AuditRecord
from tests.conftest import POLICIES


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git work tree whose `policies/` holds the committed examples."""
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.name", "Gov")
    git(tmp_path, "config", "user.email", "gov@contoso.com")
    shutil.copytree(POLICIES, tmp_path / "policies")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "examples")
    return tmp_path


def invoke(runner, store: Database, *args: str):
    url = store.engine.url.render_as_string(hide_password=False)
    result = runner.invoke(main, [*args, "--database-url", url])
    return result


def publish(runner, store: Database, folder: Path, message: str):
    result = invoke(runner, store, "publish", str(folder), "-m", message, "--actor", "gov")
    assert result.exit_code == 0, result.output
    return result


def shorten(folder: Path) -> None:
    rules = folder / "scope-a-readers.yaml"
    rules.write_text(rules.read_text().replace("PT8H, max: PT8H", "PT4H, max: PT4H"))


def listed(runner, store: Database) -> list[dict]:
    result = invoke(runner, store, "versions", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_publish_records_a_clean_and_a_dirty_git_tree(runner, store, repo):
    """A publication from a committed tree records git_dirty false; one with uncommitted
    edits records true (and says so), with the HEAD commit both times."""
    clean = publish(runner, store, repo / "policies", "clean")
    shorten(repo / "policies")
    dirty = publish(runner, store, repo / "policies", "dirty")
    assert "uncommitted" not in clean.stderr
    assert "has uncommitted changes since git " in dirty.stderr
    by_message = {v["message"]: v for v in listed(runner, store)}
    assert by_message["clean"]["git_dirty"] is False
    assert by_message["dirty"]["git_dirty"] is True
    assert by_message["clean"]["git_commit"] == by_message["dirty"]["git_commit"] is not None


def test_publish_outside_git_records_the_tree_state_as_unknown(runner, store, tmp_path):
    """Without a git work tree there is no commit and git_dirty is null (not known)."""
    shutil.copytree(POLICIES, tmp_path / "policies")
    publish(runner, store, tmp_path / "policies", "no git")
    (version,) = listed(runner, store)
    assert (version["git_commit"], version["git_dirty"]) == (None, None)


def test_versions_list_marks_the_active_version_newest_first(runner, store, repo):
    """The table lists both versions, the active one marked with *, with git state."""
    publish(runner, store, repo / "policies", "first")
    shorten(repo / "policies")
    publish(runner, store, repo / "policies", "second: 4 hours")
    result = invoke(runner, store, "versions", "list")
    assert result.exit_code == 0, result.output
    header, newest, oldest = result.output.splitlines()
    assert header.split() == ["ID", "CREATED", "AUTHOR", "GIT", "PACKAGES", "MESSAGE"]
    assert newest.startswith("*") and newest.endswith("second: 4 hours")
    assert "(uncommitted changes)" in newest
    assert not oldest.startswith("*") and oldest.endswith("first")


def test_versions_show_prints_origin_packages_and_files(runner, store, repo):
    """show names the author, message, git commit, packages and every file."""
    publish(runner, store, repo / "policies", "release 1")
    (version,) = listed(runner, store)
    result = invoke(runner, store, "versions", "show", version["id"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert f"version   {version['id']}  (active)" in text
    assert "author    gov" in text and "message   release 1" in text
    assert f"git       {version['git_commit'][:12]}\n" in text
    assert "packages  merger-collaboration, payments-entry, quarter-end-close" in text
    assert "scope-a-readers.yaml (" in text
    detail = json.loads(invoke(runner, store, "versions", "show", version["id"], "--json").output)
    assert detail["files"]["scope-a-readers.yaml"].startswith("apiVersion: policyd/v1")


def test_versions_show_of_an_unknown_id_fails_naming_it(runner, store):
    """An unknown id is a clear error, exit 1, no traceback."""
    result = invoke(runner, store, "versions", "show", "nope")
    assert result.exit_code == 1
    assert "no policy version 'nope'" in result.output


def test_versions_activate_rolls_back_and_is_audited(runner, store, repo):
    """Activating the older version makes it active again, with an audit record naming the
    actor and the version before."""
    publish(runner, store, repo / "policies", "first")
    shorten(repo / "policies")
    publish(runner, store, repo / "policies", "second")
    old = next(v for v in listed(runner, store) if v["message"] == "first")
    new = next(v for v in listed(runner, store) if v["message"] == "second")
    url = store.engine.url.render_as_string(hide_password=False)
    args = ["versions", "activate", old["id"], "--database-url", url, "--actor", "carol"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output == f"version {old['id']} is now active (before: {new['id']})\n"
    assert next(v for v in listed(runner, store) if v["active"])["id"] == old["id"]
    with store.session() as session:
        record = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.action == "version.activated")
            .order_by(AuditRecord.at.desc(), AuditRecord.id.desc())
        ).first()
        assert (record.actor, record.before, record.after) == (
            "carol",
            {"active": new["id"]},
            {"active": old["id"]},
        )
    again = runner.invoke(main, args)
    assert again.output == f"version {old['id']} is already active; nothing changed\n"


def test_bundle_id_prints_the_id_a_publication_would_get(runner, store, repo):
    """bundle-id is the id `policyd publish` then stores, with the git commit."""
    result = runner.invoke(main, ["bundle-id", str(repo / "policies"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    publish(runner, store, repo / "policies", "release")
    assert listed(runner, store)[0]["id"] == data["id"]
    assert data["git_dirty"] is False and len(data["git_commit"]) == 40


def test_version_still_works_but_says_it_is_deprecated(runner):
    """The old name prints the same id and a deprecation note on stderr."""
    old = runner.invoke(main, ["version", str(POLICIES)])
    new = runner.invoke(main, ["bundle-id", str(POLICIES)])
    assert old.exit_code == 0 and old.stdout == new.stdout
    assert "policyd version is deprecated: use `policyd bundle-id`" in old.stderr
