"""App fixtures on every database backend: SQLite always, PostgreSQL when reachable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from policyd.api import create_app
from policyd.api.context import components
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from policyd.store.models import Base
from tests.conftest import GROUPS, PEOPLE, POLICIES, Clock


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
    database = components(application).database
    components(application).decision_log.close()  # stores what it spooled, first
    components(application).runtime.close()
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
        with components(app).database.session() as session:
            _, plain = TokenService(session).create(SYSTEM, principal, role, now=clock())
        return {"Authorization": f"Bearer {plain}"}

    return make


@pytest.fixture
def admin(token) -> dict[str, str]:
    return token("root", "admin")


@pytest.fixture
def people(client, admin):
    """A small directory: ada (eligible), bob and carol (approvers), sam (sales, manager max)."""
    for user_id, body in PEOPLE.items():
        assert client.put(f"/v1/users/{user_id}", json=body, headers=admin).status_code == 200
    for group_id, members in GROUPS.items():
        assert client.put(f"/v1/groups/{group_id}", json={}, headers=admin).status_code == 200
        for user_id in members:
            response = client.put(f"/v1/groups/{group_id}/members/{user_id}", headers=admin)
            assert response.status_code == 204
    return {user_id: dict(body) for user_id, body in PEOPLE.items()}
