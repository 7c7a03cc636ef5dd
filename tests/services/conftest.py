"""Service-level fixtures over the rolled-back `session`: the example policies' runtime, the
small directory the API tests use (`people`) and a worker run (`deliver`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy.orm import Session

from policyd.connectors.config import Connectors, load_instances
from policyd.rules import Bundle, PolicyRuntime
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.memberships import DirectoryMemberships
from policyd.worker import Worker
from tests.conftest import GROUPS, PEOPLE

ROOT = Actor("root", Role.ADMIN)


@pytest.fixture
def runtime(example_bundle: Bundle) -> Iterator[PolicyRuntime]:
    """The example policies, active."""
    policies = PolicyRuntime(example_bundle)
    yield policies
    policies.close()


@pytest.fixture
def people(session, clock) -> dict[str, dict]:
    """ada (eligible for Scope A), bob, carol and ada (Scope A approvers), max, sam (sales,
    manager max), olga (Sales Ops), fab (a guest); committed."""
    directory = DirectoryService(session)
    for user_id, data in PEOPLE.items():
        directory.put_user(ROOT, user_id, data, now=clock())
    for group_id, members in GROUPS.items():
        directory.put_group(ROOT, group_id, None, now=clock())
        directory.add_members(ROOT, group_id, members, now=clock())
    session.commit()
    return {user_id: dict(body) for user_id, body in PEOPLE.items()}


@pytest.fixture
def deliver(session, runtime):
    """deliver(now) runs every due job as a worker would, through the directory connector,
    in the test's transaction (each worker session joins it)."""

    def sessions() -> Session:
        return Session(
            bind=session.connection(),
            join_transaction_mode="create_savepoint",
            expire_on_commit=False,
        )

    connectors = Connectors(load_instances(None), DirectoryMemberships(sessions))
    worker = Worker(sessions, connectors, runtime)

    def run(now: datetime) -> None:
        worker.run_jobs(now=now, limit=1000)
        session.expire_all()

    yield run
    connectors.close()
