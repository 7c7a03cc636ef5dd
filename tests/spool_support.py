"""Helpers for decision-log tests: entries, spooling processes, what the database holds."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select

from policyd.services.decision_log import encode
from policyd.store.models import DecisionRecord, SpoolProgress
from policyd.store.spool import Spool
from tests.conftest import ROOT

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def entry(number: int, at: datetime = AT) -> dict[str, Any]:
    """A decision-log row for subject `s<number>`."""
    return {
        "id": f"00000000-0000-7000-8000-{number:012d}",
        "at": at,
        "package": "p",
        "subject_id": f"s{number}",
        "outcome": "deny",
        "rule": None,
        "matched": [],
        "reason": "r",
        "version": "v",
        "input": {"n": number},
        "result": {"decision": "deny"},
        "principal": "me",
    }


def line(number: int, at: datetime = AT) -> bytes:
    return encode(entry(number, at), allow_nan=False, strict=True)


# Spools entries s<first>..s<first+count-1> into a folder, then dies without clean-up (its
# file is released, as by a crash), or with "stay" keeps it open until its stdin closes.
SPOOL_ENTRIES = """
import os, sys
from tests.spool_support import line
from policyd.store.spool import Spool

folder, first, count, how = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spool = Spool(folder)
for number in range(first, first + count):
    spool.append(line(number))
if how == "stay":
    print("spooled", flush=True)
    sys.stdin.read()
os._exit(0)
"""


def run_script(script: str, *args: object, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        **options,
    )


def spool(folder: Path, first: int, count: int) -> Spool:
    """A live writer in this process that spooled entries first..first+count-1."""
    writer = Spool(folder)
    for number in range(first, first + count):
        writer.append(line(number))
    return writer


def spool_dead(folder: object, first: int, count: int) -> None:
    """A file of `count` entries in `folder`, left by a process that died."""
    run_script(SPOOL_ENTRIES, folder, first, count, "die").check_returncode()


def spool_alive(folder: object, first: int, count: int) -> subprocess.Popen[str]:
    """A live process holding a file of `count` entries; close its stdin to end it."""
    writer = subprocess.Popen(
        [sys.executable, "-c", SPOOL_ENTRIES, str(folder), str(first), str(count), "stay"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "spooled"
    return writer


def stored_subjects(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(DecisionRecord.subject_id)))
    finally:
        engine.dispose()


def stored_ids(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(DecisionRecord.id)))
    finally:
        engine.dispose()


def progress_rows(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(SpoolProgress.spool)))
    finally:
        engine.dispose()


def subjects(first: int, count: int) -> list[str]:
    return sorted(f"s{number}" for number in range(first, first + count))


def eventually(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)
