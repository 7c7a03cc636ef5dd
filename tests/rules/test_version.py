"""Bundle versions derive from content, not formatting, and know their git commit."""

from __future__ import annotations

import shutil
import subprocess

from policyd.rules import load_bundle, load_texts
from tests.conftest import rule_file

TEXT = rule_file(
    """
    apiVersion: policyd/v1
    package:
      id: pkg
      displayName: Package
      rules:
        - id: nobody
          then: {decision: deny, reason: closed}
    """
)
REFORMATTED = rule_file(
    """
    # a comment, other key order and spacing
    package:
        rules:
          - then: {reason: closed,   decision: deny}
            id: nobody
        displayName:   Package
        id: pkg
    apiVersion:   policyd/v1
    """
)


def test_whitespace_comments_and_key_order_keep_the_version():
    """Reformatting a file does not change the content hash."""
    assert load_texts({"a.yaml": TEXT}).version == load_texts({"b.yaml": REFORMATTED}).version


def test_a_real_change_changes_the_version():
    """Changing a reason changes the version."""
    changed = TEXT.replace("reason: closed", "reason: shut")
    assert load_texts({"a.yaml": TEXT}).version.id != load_texts({"a.yaml": changed}).version.id


def test_version_records_the_git_commit(tmp_path):
    """Inside a git work tree the version carries HEAD and whether files changed since."""
    git = shutil.which("git")
    assert git, "git is needed for this test"
    (tmp_path / "pkg.yaml").write_text(TEXT)
    env = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True)
    subprocess.run([git, "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run([git, *env, "-C", str(tmp_path), "commit", "-qm", "rules"], check=True)
    head = subprocess.run(
        [git, "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    version = load_bundle(tmp_path).version
    assert version.git_commit == head and not version.git_dirty
    (tmp_path / "pkg.yaml").write_text(TEXT.replace("closed", "shut"))
    assert load_bundle(tmp_path).version.git_dirty


def test_outside_git_there_is_no_commit(tmp_path):
    """Outside a git work tree the version has no commit."""
    (tmp_path / "pkg.yaml").write_text(TEXT)
    assert load_bundle(tmp_path).version.git_commit is None
