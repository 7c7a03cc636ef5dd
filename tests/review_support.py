"""A small world for access-review tests: a reviewed package, people, and their access."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policyd.connectors.config import Connectors
from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, load_texts
from policyd.services.actor import SYSTEM
from policyd.services.directory import DirectoryService
from policyd.services.requests import RequestService
from policyd.store import Database
from policyd.store.models import Assignment
from policyd.worker import Worker
from tests.conftest import rule_file

# 09:00 on 5 January: the quarterly review opened on 1 January and ends on 15 January.
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ENDS = datetime(2026, 1, 15, 0, 0, tzinfo=UTC)


def reviewed_package(
    pid: str = "crm",
    *,
    resource: str = "directory:group:CRM.Users",
    reviewers: str = "[manager]",
    on_no_response: str = "remove",
    extra: str = "",
) -> str:
    connector, _, target = resource.partition(":")
    return (
        rule_file(
            f"""
        apiVersion: policyd/v1
        package:
          id: {pid}
          displayName: {pid.upper()}
          owners: ["user:olivia"]
          lifetime: {{permanent: true}}
          resources:
            - {{connector: {connector}, resource: "{target}", role: member}}
          rules:
            - id: anyone
              then: {{decision: auto_approve}}
          reviews:
            - id: quarterly
              schedule: {{cron: "0 0 1 1,4,7,10 *"}}
              duration: P14D
              reviewers: {reviewers}
              fallback: [owners]
              reminders: [P7D, P1D]
              onNoResponse: {on_no_response}
        """
        )
        + extra
    )


STALE = """\
      recommendations:
        - id: no-sign-in-for-90-days
          when: {subject.attributes.daysSinceSignIn: {gt: 90}}
          recommend: remove
          reason: No sign-in for 90 days
        - id: guest-whose-sponsor-left
          when: {subject.type: guest, subject.attributes.sponsorLeft: "true"}
          recommend: remove
          reason: The guest's sponsor has left
"""


@dataclass
class World:
    database: Database
    runtime: PolicyRuntime
    worker: Worker

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.database.session() as session:
            yield session

    def publish(self, *texts: str) -> None:
        self.runtime.activate(load_texts({f"f{i}.yaml": t for i, t in enumerate(texts)}))

    def people(self, users: dict[str, dict]) -> None:
        with self.session() as session:
            directory = DirectoryService(session)
            for user, fields in users.items():
                directory.put_user(SYSTEM, user, fields, now=NOW)
            session.commit()

    def grant(self, package: str, *subjects: str, now: datetime = NOW) -> list[str]:
        """Auto-approved requests, delivered by the worker; the assignment ids."""
        ids = []
        for subject in subjects:
            with self.session() as session:
                request, _ = RequestService(session, self.runtime).create(
                    SYSTEM, package, subject, None, RequestOptions(), now=now
                )
                ids.append(request.id)
        self.worker.run_jobs(now=now, limit=10_000)
        with self.session() as session:
            return list(
                session.scalars(select(Assignment.id).where(Assignment.request_id.in_(ids)))
            )

    def state(self, assignment_id: str) -> str:
        with self.session() as session:
            return session.get(Assignment, assignment_id).state

    def count(self, model, **where) -> int:
        with self.session() as session:
            return session.scalar(select(func.count()).select_from(model).filter_by(**where))


def make_world(database: Database, connectors: Connectors, *texts: str) -> World:
    runtime = PolicyRuntime(load_texts({f"f{i}.yaml": t for i, t in enumerate(texts)}))
    return World(database, runtime, Worker(database.session, connectors, runtime))


# The holders of the service-level review tests (tests/services): pat signed in last in
# September (stale by January), gil is a guest whose named sponsor is sid.
HOLDERS = {
    "pat": {"manager_id": "max", "attributes": {"lastSignIn": "2025-09-01T00:00:00Z"}},
    "sue": {"manager_id": "max"},
    "quinn": {},
    "max": {},
    "olivia": {},
    "sid": {},
    "gil": {"type": "guest", "email": "gil@partner.example", "attributes": {"sponsor": "sid"}},
}


def reviewed_in(session: Session, runtime: PolicyRuntime, deliver, *texts: str):
    """Publish `texts` on `runtime`, put HOLDERS in the directory of the test's `session`
    and return grant(package, *subjects): auto-approved requests, delivered by `deliver`
    (tests/services' fixture), as the assignments."""
    runtime.activate(load_texts({f"f{i}.yaml": text for i, text in enumerate(texts)}))
    directory = DirectoryService(session)
    for user, fields in HOLDERS.items():
        directory.put_user(SYSTEM, user, fields, now=NOW)
    session.commit()

    def grant(package: str, *subjects: str) -> list[Assignment]:
        requests = RequestService(session, runtime)
        for subject in subjects:
            requests.create(SYSTEM, package, subject, None, RequestOptions(), now=NOW)
        deliver(NOW)
        query = select(Assignment).where(Assignment.subject_id.in_(subjects))
        return list(session.scalars(query.order_by(Assignment.subject_id)))

    return grant
