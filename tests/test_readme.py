"""The README's curl session runs as written against `policyd serve`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import POLICIES, ROOT

TOKEN = re.compile(r"^\s+(pd_[A-Za-z0-9_-]+)\s*$", re.MULTILINE)


def readme_session() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Try it with curl") :]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path):
    """`policyd serve` on a free port, its home in tmp_path, run from a folder that has the
    README's `.venv/bin/policyd`; yields (process, url, token)."""
    for tool in ("curl", "jq", "bash"):
        if shutil.which(tool) is None:
            pytest.skip(f"the README session needs {tool}: apt-get install {tool}")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "policyd").symlink_to(Path(sys.executable).parent / "policyd")
    shutil.copytree(POLICIES, tmp_path / "policies")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYD_")}
    env["POLICYD_HOME"] = str(tmp_path / "home")
    process = subprocess.Popen(
        [str(bin_dir / "policyd"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = ""
    deadline = time.monotonic() + 90
    while (found := TOKEN.search(output)) is None:
        line = process.stdout.readline()
        if not line or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"policyd serve printed no token:\n{output}")
        output += line
    try:
        yield process, f"http://127.0.0.1:{port}", found.group(1), env
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stdout.close()


def test_the_readme_curl_session_runs_as_written(served, tmp_path):
    """Pasted into bash with the printed token (and the test's port), every command of the
    README's session succeeds, and ada ends with an active assignment approved by bob."""
    process, url, token, env = served
    script = readme_session()
    assert "export TOKEN=pd_..." in script and "http://127.0.0.1:8080" in script
    script = script.replace("export TOKEN=pd_...", f"export TOKEN={token}")
    script = script.replace("http://127.0.0.1:8080", url)
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script.replace("curl -sS", "curl -sS --fail")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"state": "pending_approval"' in result.stdout or '"state":"pending_approval"' in (
        result.stdout
    )
    assert re.search(r'"state":\s*"delivered"', result.stdout), result.stdout
    assert re.search(r'"state":\s*"active"', result.stdout), result.stdout
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
