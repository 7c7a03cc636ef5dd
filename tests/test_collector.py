"""The cyclic collector: a deployment's server freezes its start-up heap; tests' apps do not."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import POLICIES, ROOT

FROZEN = """
import gc, sys
from policyd.api import create_app
before = gc.get_freeze_count()
create_app() if sys.argv[1] == "environment" else create_app(
    {"POLICYD_DATABASE_URL": sys.argv[2], "POLICYD_POLICIES": sys.argv[3]}
)
print(before, gc.get_freeze_count())
"""


def frozen(store, tmp_path, how: str) -> tuple[int, int]:
    """Objects frozen before and after `create_app` in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLICYD_")} | {
        "POLICYD_DATABASE_URL": store.url,
        "POLICYD_POLICIES": str(POLICIES),
        "POLICYD_SPOOL_DIR": str(tmp_path / "spool"),
    }
    done = subprocess.run(
        [sys.executable, "-c", FROZEN, how, store.url, str(POLICIES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split()
    return int(before), int(after)


def test_an_app_of_the_environment_freezes_what_it_built(store, tmp_path):
    """gunicorn's `create_app()`: the modules, the app and its policy version leave the
    collector's full passes, which would otherwise walk them for nothing mid-request."""
    before, after = frozen(store, tmp_path, "environment")
    assert before == 0
    assert after > 50_000  # about 150,000 objects with the example policies


def test_an_app_of_given_settings_freezes_nothing(store, tmp_path):
    """Tests (and embedders) build apps from settings, many per process: none is frozen."""
    assert frozen(store, tmp_path, "settings") == (0, 0)
