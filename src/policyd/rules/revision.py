"""Load the rule files of a git revision: `git archive` into a temporary folder, then the usual
loader. Nothing from the repository runs; git only reads its objects."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from policyd.rules.loader import load_bundle
from policyd.rules.model import Bundle
from policyd.rules.source import ProblemsError


class RevisionError(ValueError):
    """Not a git work tree, not a revision, or no such folder at that revision."""


def resolve_commit(cwd: Path, revision: str) -> str | None:
    """The commit `revision` names in the repository around `cwd`; None when it names none."""
    if revision.startswith("-"):
        return None  # never let a revision be read as an option
    result = _git(
        cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"
    )
    return result.stdout.strip() if result.returncode == 0 else None


def repository_path(cwd: Path, path: str) -> str:
    """`path` (relative to `cwd`) as a path from the top of the repository around `cwd`."""
    prefix = _git(cwd, "rev-parse", "--show-prefix").stdout.strip()
    joined = PurePosixPath(prefix) / PurePosixPath(Path(path).as_posix())
    parts: list[str] = []
    for part in joined.parts:
        if part == "..":
            if not parts:
                raise RevisionError(f"{path!r} is outside the repository")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts) or "."


def load_revision(cwd: Path, revision: str, path: str) -> Bundle:
    """The bundle in folder `path` (from the repository's top) at `revision`.

    Raises:
        RevisionError: `revision` names no commit, or `path` is not a folder there.
        ProblemsError: the rule files there do not load; files read `REV:path/file`.
    """
    commit = resolve_commit(cwd, revision)
    if commit is None:
        raise RevisionError(f"{revision!r} is not a git revision here")
    path = path.strip("/") or "."
    top = Path(_git(cwd, "rev-parse", "--show-toplevel").stdout.strip())
    archive = _git(top, "archive", "--format=tar", commit, "--", path, binary=True)
    if archive.returncode != 0:
        raise RevisionError(f"{revision}:{path} is not a folder of that revision")
    shown = f"{revision}:{path}"
    with tempfile.TemporaryDirectory(prefix="policyd-rev-") as folder:
        try:
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                # The data filter refuses links out of the folder, devices and odd modes.
                tar.extractall(folder, filter="data")
        except tarfile.TarError as err:
            raise RevisionError(f"{shown}: cannot be read safely ({err})") from None
        root = Path(folder) / path
        try:
            bundle = load_bundle(root)
        except ProblemsError as err:
            raise ProblemsError(
                [
                    dataclasses.replace(p, file=p.file.replace(str(root), shown, 1))
                    for p in err.problems
                ]
            ) from None
    version = dataclasses.replace(bundle.version, git_commit=commit, git_dirty=False)
    packages = {  # named as `REV:path/file`, not by the temporary folder they were read from
        pid: dataclasses.replace(p, file=p.file.replace(str(root), shown, 1))
        for pid, p in bundle.packages.items()
    }
    return dataclasses.replace(bundle, version=version, packages=packages)


def _git(cwd: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            text=not binary,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise RevisionError(f"cannot run git: {err}") from None
