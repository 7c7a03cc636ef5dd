"""Content-derived bundle versions and the git commit they came from."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any


def content_hash(documents: Iterable[Any]) -> str:
    """sha256 over the parsed rule files, blind to whitespace, key order and file order."""
    canonical = sorted(json.dumps(doc, sort_keys=True, default=_plain) for doc in documents)
    digest = hashlib.sha256()
    for text in canonical:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _plain(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot hash {type(value).__name__}")


def git_state(directory: Path) -> tuple[str | None, bool]:
    """(HEAD commit, whether files below `directory` differ from it), or (None, False)."""
    try:
        inside = _git(directory, "rev-parse", "--is-inside-work-tree")
        if inside != "true":
            return None, False
        commit = _git(directory, "rev-parse", "HEAD")
        status = _git(directory, "status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None, False
    return commit or None, bool(status)


def _git(directory: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout.strip()
