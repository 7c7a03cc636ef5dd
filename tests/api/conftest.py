"""App fixtures on every database backend: SQLite always, PostgreSQL when reachable."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from policyd.api import create_app
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from policyd.store.models import Base
from tests.conftest import POLICIES

PG_ADMIN_URL = os.environ.get(
    "POLICYD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = os.environ.get("POLICYD_TEST_DATABASES", "sqlite,postgresql").split(",")


class Clock:
    """A settable clock; tests move time instead of sleeping."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """One fresh database per backend and test run."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'policyd.db'}"
        return
    name = f"policyd_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {err}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def app(database_url: str, clock: Clock) -> Iterator[Flask]:
    """The app on a clean database with the example policies published."""
    application = create_app(
        {
            "TESTING": True,
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": str(POLICIES),
            "POLICYD_CLOCK": clock,
            "POLICYD_AUTO_UPGRADE": True,
            "POLICYD_TRUSTED_APPS": "trusted-app",
        }
    )
    yield application
    database = application.extensions["policyd.db"]
    application.extensions["policyd.runtime"].close()
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    database.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def token(app: Flask, clock: Clock):
    """Make an API token: token(principal, role) -> Authorization headers."""

    def make(principal: str, role: str = "user") -> dict[str, str]:
        with app.extensions["policyd.db"].session() as session:
            _, plain = TokenService(session).create(SYSTEM, principal, role, now=clock())
        return {"Authorization": f"Bearer {plain}"}

    return make


@pytest.fixture
def admin(token) -> dict[str, str]:
    return token("root", "admin")
