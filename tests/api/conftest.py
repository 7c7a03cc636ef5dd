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
    application.extensions["policyd.decision_log"].close()  # stores what it spooled, first
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


@pytest.fixture
def people(client, admin):
    """A small directory: ada (eligible), bob and carol (approvers), sam (sales, manager max)."""
    users = {
        "ada": {"email": "ada@contoso.com", "department": "Engineering"},
        "bob": {"email": "bob@contoso.com"},
        "carol": {"email": "carol@contoso.com"},
        "max": {"email": "max@contoso.com", "department": "Sales"},
        "sam": {"email": "sam@contoso.com", "department": "Sales", "manager_id": "max"},
        "olga": {"email": "olga@contoso.com"},
        "fab": {"email": "fab@fabrikam.com", "type": "guest"},
    }
    for user_id, body in users.items():
        assert client.put(f"/v1/users/{user_id}", json=body, headers=admin).status_code == 200
    groups = {
        "Group.ScopeA.Readers.Eligible": ["ada"],
        "Group.ScopeA.Approvers": ["bob", "carol", "ada"],
        "Sales.Ops": ["olga"],
    }
    for group_id, members in groups.items():
        assert client.put(f"/v1/groups/{group_id}", json={}, headers=admin).status_code == 200
        for user_id in members:
            response = client.put(f"/v1/groups/{group_id}/members/{user_id}", headers=admin)
            assert response.status_code == 204
    return users
