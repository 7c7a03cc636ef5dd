"""Rule files of a git revision, read with `git archive` into a temporary folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from policyd.rules import ProblemsError, load_bundle
from policyd.rules.revision import RevisionError, load_revision, repository_path
from tests.conftest import POLICIES


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.name", "Gov")
    git(tmp_path, "config", "user.email", "gov@contoso.com")
    shutil.copytree(POLICIES, tmp_path / "policies")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "examples")
    return tmp_path


def test_a_revision_loads_as_committed_whatever_the_work_tree_holds(repo):
    """Uncommitted edits do not count; the bundle names the commit and is not dirty."""
    (repo / "policies" / "scope-a-readers.yaml").write_text("not: [valid")
    bundle = load_revision(repo, "HEAD", "policies")
    assert bundle.version.id == load_bundle(POLICIES).version.id
    assert bundle.version.git_commit == git(repo, "rev-parse", "HEAD")
    assert bundle.version.git_dirty is False
    assert bundle.packages["scope-a-readers"].file == "HEAD:policies/scope-a-readers.yaml"


def test_problems_name_the_revision_and_path_not_a_temporary_folder(repo):
    """A broken file at a revision is reported as REV:path/file:line."""
    (repo / "policies" / "broken.yaml").write_text("apiVersion: policyd/v1\npackage: {id: x}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "broken")
    with pytest.raises(ProblemsError) as caught:
        load_revision(repo, "HEAD", "policies")
    files = {problem.file for problem in caught.value.problems}
    assert files == {"HEAD:policies/broken.yaml"}


def test_a_link_out_of_the_repository_is_refused(repo):
    """A committed symlink to a file outside is never followed: a clear error, not a read."""
    os.symlink("/etc/hostname", repo / "policies" / "outside.yaml")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "link")
    with pytest.raises(RevisionError, match="cannot be read safely"):
        load_revision(repo, "HEAD", "policies")


def test_paths_are_taken_from_the_top_and_may_not_leave_it(repo):
    """A folder below the top maps to its path from the top; `..` past the top is refused."""
    assert repository_path(repo / "policies", "tests") == "policies/tests"
    assert repository_path(repo / "policies", "..") == "."
    with pytest.raises(RevisionError, match="outside the repository"):
        repository_path(repo, "../elsewhere")


def test_an_unknown_revision_is_a_revision_error(repo):
    with pytest.raises(RevisionError, match="'nope' is not a git revision here"):
        load_revision(repo, "nope", "policies")
