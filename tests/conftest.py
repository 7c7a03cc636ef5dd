"""Shared fixtures: example policies, one settable clock, a database per backend, rule helpers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from textwrap import dedent

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, event, text
from sqlalchemy.orm import Session

from policyd.rules import Bundle, Policy, load_bundle, load_texts
from policyd.store import Database
from policyd.store.database import make_engine
from policyd.store.models import Base

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
PG_ADMIN_URL = os.environ.get(
    "POLICYD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = os.environ.get("POLICYD_TEST_DATABASES", "sqlite,postgresql").split(",")
# The small directory of the `people` fixtures (tests/api over HTTP, tests/services direct):
# ada (eligible for Scope A), bob, carol and ada (Scope A approvers), sam (sales, manager
# max), olga (Sales Ops), fab (a guest).
PEOPLE = {
    "ada": {"email": "ada@contoso.com", "department": "Engineering"},
    "bob": {"email": "bob@contoso.com"},
    "carol": {"email": "carol@contoso.com"},
    "max": {"email": "max@contoso.com", "department": "Sales"},
    "sam": {"email": "sam@contoso.com", "department": "Sales", "manager_id": "max"},
    "olga": {"email": "olga@contoso.com"},
    "fab": {"email": "fab@fabrikam.com", "type": "guest"},
}
GROUPS = {
    "Group.ScopeA.Readers.Eligible": ["ada"],
    "Group.ScopeA.Approvers": ["bob", "carol", "ada"],
    "Sales.Ops": ["olga"],
}


class Clock:
    """A clock that stands still until a test moves it: `clock()` is now (aware, UTC)."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    """The one clock of a test, at 2026-01-05 09:00 UTC (tests pass time in; nothing reads
    the real clock): the app's POLICYD_CLOCK, and `now=clock()` for a service."""
    return Clock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


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
def session(store: Database) -> Iterator[Session]:
    """A session on the backend's database whose every change is rolled back after the test,
    commits included: it runs inside one outer transaction, and a service's commit only
    releases a savepoint of it."""
    engine = make_engine(store.url)
    if engine.dialect.name == "sqlite":
        # pysqlite begins transactions lazily and a savepoint's release would commit; with
        # the driver in autocommit mode SQLAlchemy's own BEGIN makes the outer one real.
        event.listen(engine, "connect", _driver_autocommit)
        event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN"))
    connection = engine.connect()
    outer = connection.begin()
    test_session = Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    try:
        yield test_session
    finally:
        test_session.close()
        outer.rollback()
        connection.close()
        engine.dispose()


def _driver_autocommit(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None


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
