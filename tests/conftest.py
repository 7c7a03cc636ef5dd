"""Shared fixtures: example policies, a frozen clock, a database per backend, rule helpers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from policyd.rules import Bundle, Policy, load_bundle, load_texts
from policyd.store import Database
from policyd.store.models import Base

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
PG_ADMIN_URL = os.environ.get(
    "POLICYD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = os.environ.get("POLICYD_TEST_DATABASES", "sqlite,postgresql").split(",")


@pytest.fixture
def clock() -> datetime:
    """A fixed, timezone-aware `now` (tests pass time in; nothing reads the clock)."""
    return datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def example_bundle() -> Bundle:
    return load_bundle(POLICIES)


@pytest.fixture
def example_policy(example_bundle: Bundle) -> Iterator[Policy]:
    policy = Policy(example_bundle)
    yield policy
    policy.close()


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A new, empty database on `backend` ("sqlite" in `folder`, or "postgresql"), dropped
    afterwards; skips the test when PostgreSQL is not reachable."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'policyd-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"policyd_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {err}")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """One fresh database per backend and test run."""
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


def empty_tables(database: Database) -> None:
    """Delete every row, so the next test that shares the session's database starts clean."""
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def store(database_url: str) -> Iterator[Database]:
    """The schema on the backend's database, emptied again after the test."""
    database = Database(database_url)
    database.upgrade()
    yield database
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    database.dispose()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def rule_file(text: str) -> str:
    return dedent(text).lstrip("\n")


def policy_from(*texts: str) -> Policy:
    """A Policy built from rule-file texts (caller closes it)."""
    return Policy(load_texts({f"f{i}.yaml": rule_file(t) for i, t in enumerate(texts)}))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With POLICYD_NO_SKIP=1 (set by CI) a skipped test counts as a failure."""
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get("POLICYD_NO_SKIP") == "1"
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, but POLICYD_NO_SKIP=1 forbids skips: {report.longrepr}"
    return report
