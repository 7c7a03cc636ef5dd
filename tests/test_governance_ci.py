"""The documented CI workflow (docs/ci/policies-check.yml) and the pre-commit hooks, run end to
end against a policies repository the test creates: a pull request branch against main."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from policyd.api.context import components
from tests.conftest import POLICIES, ROOT

WORKFLOW = ROOT / "docs" / "ci" / "policies-check.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
BIN = Path(sys.executable).parent
DENY_RULE = """\
    - id: no-contractors
      when: {subject.employeeType: contractor}
      then: {decision: deny, reason: Contractors cannot read Scope A}

"""
DENY_CASE = """
  - name: a contractor is denied even when eligible
    package: scope-a-readers
    now: 2026-01-05T09:00:00Z
    subject: {id: cy, employeeType: contractor, groups: [Group.ScopeA.Readers.Eligible]}
    expect: {decision: deny, rule: no-contractors}
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def pull_request(tmp_path: Path) -> Path:
    """A clone of a policies repository whose main holds the examples, on a branch `jit-4h`
    that shortens Scope A access to 4 hours and adds a deny rule, with its test cases."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(tmp_path, "clone", "-q", str(origin), str(work))
    for key, value in (("user.name", "Gov Team"), ("user.email", "gov@contoso.com")):
        git(work, "config", key, value)
    shutil.copytree(POLICIES, work / "policies")
    git(work, "add", "policies")
    git(work, "commit", "-q", "-m", "the example policies")
    git(work, "push", "-q", "origin", "HEAD:main")
    git(work, "checkout", "-q", "-b", "jit-4h")
    rules = work / "policies" / "scope-a-readers.yaml"
    text = rules.read_text().replace("duration: PT8H, max: PT8H", "duration: PT4H, max: PT4H")
    rules.write_text(text.replace("  rules:\n", "  rules:\n" + DENY_RULE, 1))
    cases = work / "policies" / "tests" / "scope-a-readers.yaml"
    text = cases.read_text().replace("T17:00:00Z", "T13:00:00Z")
    cases.write_text(text + DENY_CASE)
    git(work, "commit", "-q", "-am", "Scope A: 4 hours; contractors denied")
    git(work, "fetch", "-q", "origin")
    return work


def run_workflow(work: Path, database_url: str = "") -> tuple[list[tuple[str, int, str]], Path]:
    """Every `run` step of the documented workflow except the install, as GitHub runs it
    (bash -e) with a pull request's variables; (name, exit status, output) per step.
    `database_url` is the POLICYD_DATABASE_URL secret ("" when it is not set)."""
    summary = work.parent / "step-summary.md"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "GITHUB_BASE_REF": "main",
        "GITHUB_STEP_SUMMARY": str(summary),
        "POLICYD_DATABASE_URL": database_url,  # "": what GitHub gives for a missing secret
    }
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["policies"]["steps"]
    results = []
    for step in steps:
        if "run" not in step or step["name"] == "Install policyd":
            continue
        done = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        results.append((step["name"], done.returncode, done.stdout + done.stderr))
    return results, summary


def test_the_workflow_checks_tests_and_diffs_a_pull_request(pull_request: Path):
    """Every step passes, the JUnit report has each case, and the summary shows exactly the
    two changes (the lifetime and the added rule) with the replay step skipped."""
    results, summary = run_workflow(pull_request)
    assert [(name, code) for name, code, _ in results] == [
        ("Check", 0),
        ("Test with a coverage floor", 0),
        ("JUnit report", 0),
        ("Diff against the base branch", 0),
        ("Replay against the live service", 0),
        ("Summary", 0),
    ], results
    report = ElementTree.parse(pull_request / "policy-tests.xml").getroot()
    assert (report.get("tests"), report.get("failures")) == ("18", "0")
    text = summary.read_text()
    assert "**1 package changed, 1 field changed, 1 rule added**" in text
    assert (
        "| changed | lifetime | `{duration: PT8H, max: PT8H}` | `{duration: PT4H, max: PT4H}` |"
        in (text)
    )
    assert "| added | rule `no-contractors` (line 12) |" in text
    assert text.count("| changed |") + text.count("| added |") == 2
    assert "_Replay skipped: no POLICYD_DATABASE_URL or no policyd replay._" in text


def test_a_failing_policy_test_fails_the_workflow_and_the_junit_report_names_it(
    pull_request: Path,
):
    """A wrong expectation fails the test step; the JUnit report carries the mismatch."""
    cases = pull_request / "policies" / "tests" / "scope-a-readers.yaml"
    cases.write_text(cases.read_text().replace("T13:00:00Z", "T17:00:00Z", 1))
    results, _ = run_workflow(pull_request)
    codes = {name: code for name, code, _ in results}
    assert codes["Check"] == 0
    assert codes["Test with a coverage floor"] == 1
    assert codes["JUnit report"] == 1
    report = ElementTree.parse(pull_request / "policy-tests.xml").getroot()
    failures = report.findall(".//testcase/failure")
    assert report.get("failures") == "1" and len(failures) == 1
    assert "2026-01-05T17:00:00" in failures[0].get("message")


def test_the_pre_commit_hooks_run_policyd_check_and_test(pull_request: Path):
    """Each hook is a python hook whose entry is the installed policyd script; run as
    pre-commit runs it (entry plus args, no file names) it passes on the pull request."""
    hooks = yaml.safe_load(HOOKS.read_text())
    assert [hook["id"] for hook in hooks] == ["policyd-check", "policyd-test"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for hook in hooks:
        command = shlex.split(hook["entry"])
        assert hook["language"] == "python" and not hook["pass_filenames"]
        assert command[0] in scripts
        args = ["policies", "--min-coverage", "100"] if hook["id"] == "policyd-test" else []
        done = subprocess.run(
            [str(BIN / command[0]), *command[1:], *args],
            cwd=pull_request,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_with_a_database_the_replay_step_reports_the_decisions_that_flip(
    pull_request: Path, tmp_path: Path
):
    """Given POLICYD_DATABASE_URL of a service that decided for a contractor and an eligible
    member under main's rules, the summary's replay names the one decision that flips."""
    from policyd.api import create_app
    from policyd.services.actor import SYSTEM
    from policyd.services.tokens import TokenService

    url = f"sqlite:///{tmp_path / 'live.db'}"
    main_rules = tmp_path / "main-policies"
    git(pull_request, "worktree", "add", "-q", str(tmp_path / "main-tree"), "origin/main")
    shutil.copytree(tmp_path / "main-tree" / "policies", main_rules)
    app = create_app(
        {
            "POLICYD_DATABASE_URL": url,
            "POLICYD_POLICIES": str(main_rules),
            "POLICYD_AUTO_UPGRADE": True,
        }
    )
    try:
        with components(app).database.session() as session:
            _, plain = TokenService(session).create(SYSTEM, "ops", "admin", now=datetime.now(UTC))
        client, headers = app.test_client(), {"Authorization": f"Bearer {plain}"}
        client.put("/v1/users/cy", json={"employee_type": "contractor"}, headers=headers)
        for subject in ("cy", "ada"):
            body = {"package": "scope-a-readers", "subject": {"id": subject}}
            assert client.post("/v1/decisions", json=body, headers=headers).status_code == 200
    finally:
        components(app).decision_log.close()
        components(app).runtime.close()
        components(app).database.dispose()
    results, summary = run_workflow(pull_request, database_url=url)
    codes = {name: code for name, code, _ in results}
    assert codes["Replay against the live service"] == 0, results
    text = summary.read_text()
    replay = text[text.index("### Replay of the last 30 days") :]
    assert "examined 2 decisions under policies (version " in replay
    assert ": 1 would change" in replay
    assert "  cy  scope-a-readers  require_approval (everyone-else) -> deny (no-contractors)" in (
        replay
    )
