"""docs/governance.md shows real output: its commands, run in order in a fresh repository of the
example policies, print what the page shows (publication times aside), and its patch applies.

`python -m tests.test_governance_docs` runs the walk and rewrites the page's outputs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from policyd.api.context import components
from tests.conftest import POLICIES, ROOT
from tests.test_governance_ci import BIN, DENY_CASE, DENY_RULE

DOC = ROOT / "docs" / "governance.md"
BLOCK = re.compile(r"```(console|diff)\n(.*?)```", re.DOTALL)
MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\+00:00|Z)?")
DECISION_ID = re.compile(r"\[decision [0-9a-f-]{36},")


def environment(folder: Path) -> dict[str, str]:
    """Fixed git identities and dates (so commits are the page's), and a database of its own."""
    moment = "2026-12-01T09:00:00+00:00"
    return {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Ann",
        "GIT_AUTHOR_EMAIL": "ann@contoso.com",
        "GIT_COMMITTER_NAME": "Ann",
        "GIT_COMMITTER_EMAIL": "ann@contoso.com",
        "GIT_AUTHOR_DATE": moment,
        "GIT_COMMITTER_DATE": moment,
        "POLICYD_HOME": str(folder / "home"),
        "POLICYD_DATABASE_URL": f"sqlite:///{folder / 'policyd.db'}",
    }


def shell(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout


def start(folder: Path) -> tuple[Path, dict[str, str]]:
    """main holds the examples, published as the active version, as the page begins; the
    service has decided Scope A for ada (eligible) and cy (a contractor)."""
    repo, env = folder / "repo", environment(folder)
    shutil.copytree(POLICIES, repo / "policies")
    for command in (
        "git init -q -b main && git add policies && git commit -qm 'the example policies'",
        "policyd db upgrade && policyd publish -m 'the example policies' --actor ann",
    ):
        code, output = shell(command, repo, env)
        assert code == 0, output
    decide(env["POLICYD_DATABASE_URL"])
    return repo, env


def decide(url: str) -> None:
    """Two Scope A decisions through the API, as the live service would have logged them."""
    from policyd.api import create_app
    from policyd.services.actor import SYSTEM
    from policyd.services.tokens import TokenService

    app = create_app({"POLICYD_DATABASE_URL": url, "POLICYD_POLICIES": ""})
    try:
        with components(app).database.session() as session:
            _, plain = TokenService(session).create(SYSTEM, "ops", "admin", now=datetime.now(UTC))
        client, headers = app.test_client(), {"Authorization": f"Bearer {plain}"}
        client.put("/v1/users/cy", json={"employee_type": "contractor"}, headers=headers)
        client.put("/v1/groups/Group.ScopeA.Readers.Eligible", json={}, headers=headers)
        client.put("/v1/groups/Group.ScopeA.Readers.Eligible/members/ada", headers=headers)
        for subject in ("ada", "cy"):
            body = {"package": "scope-a-readers", "subject": {"id": subject}}
            assert client.post("/v1/decisions", json=body, headers=headers).status_code == 200
    finally:
        components(app).decision_log.close()
        components(app).runtime.close()
        components(app).database.dispose()


def edit(repo: Path) -> str:
    """The page's edit, made by hand: 4 hours, a deny rule, and the test cases to match."""
    rules = repo / "policies" / "scope-a-readers.yaml"
    text = rules.read_text().replace("duration: PT8H, max: PT8H", "duration: PT4H, max: PT4H")
    rules.write_text(text.replace("  rules:\n", "  rules:\n" + DENY_RULE, 1))
    cases = repo / "policies" / "tests" / "scope-a-readers.yaml"
    text = cases.read_text().replace("T17:00:00Z", "T13:00:00Z")
    cases.write_text(text.replace("eight hours", "four hours") + DENY_CASE)
    return subprocess.run(
        ["git", "diff"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def commands(body: str) -> list[tuple[str, str]]:
    """(command, output) pairs of a console block."""
    pairs: list[tuple[str, str]] = []
    for line in body.splitlines(keepends=True):
        if line.startswith("$ "):
            pairs.append((line[2:].rstrip("\n"), ""))
        elif pairs:
            pairs[-1] = (pairs[-1][0], pairs[-1][1] + line)
    return pairs


def walk(folder: Path, text: str, regenerate: bool) -> tuple[list[tuple[str, str, str]], str]:
    """Run the page in order: (command, shown, printed) per command, and the page rewritten
    with what was printed (and, when regenerating, the patch made by hand)."""
    repo, env = start(folder)
    results = []
    pieces, last = [], 0
    for block in BLOCK.finditer(text):
        kind, body = block.group(1), block.group(2)
        if kind == "diff":
            if regenerate:
                body = edit(repo)
            else:
                patch = folder / "change.patch"
                patch.write_text(body)
                code, output = shell(f"git apply {patch}", repo, env)
                assert code == 0, output
            new_body = body
        else:
            new_body = ""
            for command, shown in commands(body):
                _, printed = shell(command, repo, env)
                results.append((command, shown, printed))
                new_body += f"$ {command}\n{printed}"
        pieces += [text[last : block.start(2)], new_body]
        last = block.end(2)
    return results, "".join([*pieces, text[last:]])


def masked(output: str) -> str:
    """Without what differs from run to run: times and decision ids."""
    return DECISION_ID.sub("[decision <id>,", MOMENT.sub("<time>", output))


def test_the_governance_walk_prints_what_the_page_shows(tmp_path):
    """Every command of docs/governance.md prints the output shown under it."""
    results, _ = walk(tmp_path, DOC.read_text(encoding="utf-8"), regenerate=False)
    assert len(results) >= 15
    for command, shown, printed in results:
        assert masked(printed) == masked(shown), command


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        _, page = walk(Path(folder), DOC.read_text(encoding="utf-8"), regenerate=True)
    DOC.write_text(page, encoding="utf-8")
