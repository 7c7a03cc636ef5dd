"""The whole service wired to real servers (slapd, a SCIM server, a webhook receiver), for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from policyd.api import create_app
from policyd.api.context import components
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from policyd.store.models import Assignment, Base, Job
from policyd.worker import Worker
from tests.conftest import Clock
from tests.connectors.ldap_server import ADMIN_DN, ADMIN_PASSWORD, GROUPS, USER_DN, Slapd
from tests.connectors.scim_server import TOKEN, ScimServer
from tests.connectors.webhook_server import SIGNING_KEY, WebhookServer

LDAP = "ldap-corp"
SCIM = "scim-corp"
WEBHOOK = "app-hooks"
# Secrets reach policyd only through these environment variables, as in production.
SECRET_VARIABLES = {
    "E2E_LDAP_PASSWORD": ADMIN_PASSWORD,
    "E2E_SCIM_TOKEN": TOKEN,
    "E2E_WEBHOOK_KEY": SIGNING_KEY,
}
BYSTANDER = "dave"  # a seeded slapd user every test LDAP group holds, so it is never empty
BYSTANDER_DN = USER_DN.format(user_id=BYSTANDER)
DELIVERY = ("grant", "revoke")  # the job kinds that go through connectors
WAIT = 60.0  # seconds any wait may take before the test fails


def package_file(package_id: str, resources: list[dict[str, str]], lifetime: str = "PT8H") -> str:
    """A rule file: one package granting `resources`, approved automatically for everyone."""
    document = {
        "apiVersion": "policyd/v1",
        "package": {
            "id": package_id,
            "displayName": package_id,
            "resources": resources,
            "lifetime": {"duration": lifetime},
            "rules": [
                {
                    "id": "everyone",
                    "then": {"decision": "auto_approve", "reason": "end-to-end test"},
                }
            ],
        },
    }
    return yaml.safe_dump(document, sort_keys=False)


def ldap_resource(group: str) -> dict[str, str]:
    return {"connector": LDAP, "resource": f"group:{group}", "role": "member"}


def scim_resource(display_name: str) -> dict[str, str]:
    return {"connector": SCIM, "resource": f"group:{display_name}", "role": "member"}


def webhook_resource(resource: str) -> dict[str, str]:
    return {"connector": WEBHOOK, "resource": resource, "role": "member"}


def new_ldap_group(slapd: Slapd) -> str:
    """A new group in slapd holding only the bystander (tests share one slapd); its name."""
    return slapd.add_group([BYSTANDER])


def connectors_file(slapd: Slapd, scim: ScimServer, webhook: WebhookServer) -> str:
    """The connector instances for the three servers; secrets are named, never written."""
    document = {
        "apiVersion": "policyd/v1",
        "connectors": [
            {
                "name": LDAP,
                "type": "ldap",
                "settings": {
                    "url": slapd.url,
                    "bind_dn": ADMIN_DN,
                    "user_dn": USER_DN,
                    "group_base": GROUPS,
                    "timeout": 5,
                },
                "secrets": {"password": "E2E_LDAP_PASSWORD"},
            },
            {
                "name": SCIM,
                "type": "scim",
                "settings": {"url": scim.url, "timeout": 5},
                "secrets": {"token": "E2E_SCIM_TOKEN"},
            },
            {
                "name": WEBHOOK,
                "type": "webhook",
                "settings": {"url": f"{webhook.url}/events", "timeout": 5},
                "secrets": {"signing_key": "E2E_WEBHOOK_KEY"},
            },
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


@dataclass(frozen=True)
class Person:
    user_id: str
    dn: str  # in slapd
    scim_id: str  # in the SCIM server


@dataclass
class Stack:
    """policyd (API and an in-process worker) with its connectors pointing at real servers."""

    app: Flask
    client: FlaskClient
    admin: dict[str, str]
    clock: Clock
    slapd: Slapd
    scim: ScimServer
    webhook: WebhookServer
    database_url: str
    connectors_path: Path
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def worker(self) -> Worker:
        return components(self.app).worker

    def sweep(self) -> dict[str, int]:
        return self.worker.sweep(now=self.clock())

    def add_person(self, name: str) -> Person:
        """A person in policyd's directory, in slapd and in the SCIM server, under one id."""
        user_id = f"{self.prefix}-{name}"
        email = f"{user_id}@example.org"
        response = self.client.put(
            f"/v1/users/{user_id}", json={"email": email}, headers=self.admin
        )
        assert response.status_code == 200, response.json
        dn = self.slapd.add_user(user_id)
        return Person(user_id, dn, self.scim.create_user(user_id, email))

    def request(self, package: str, person: Person) -> dict[str, Any]:
        body = {"package": package, "subject": {"id": person.user_id}}
        response = self.client.post("/v1/requests", json=body, headers=self.admin)
        assert response.status_code == 201, response.json
        return response.json

    def get(self, path: str) -> Any:
        response = self.client.get(path, headers=self.admin)
        assert response.status_code == 200, response.json
        return response.json

    def assignment(self, request: dict[str, Any]) -> dict[str, Any]:
        found = self.get(f"/v1/assignments?subject={request['subject_id']}&page_size=100")
        (assignment,) = [a for a in found if a["request_id"] == request["id"]]
        return assignment

    def jobs(self, *kinds: str, **where: Any) -> list[Job]:
        """Outbox rows of `kinds` (default: grants and revokes, not notifications), read in a
        fresh session; e.g. jobs("grant", state="done")."""
        with components(self.app).database.session() as session:
            query = (
                select(Job)
                .where(Job.kind.in_(kinds or DELIVERY))
                .filter_by(**where)
                .order_by(Job.created_at, Job.id)
            )
            return list(session.scalars(query))

    def assignments(self) -> list[Assignment]:
        with components(self.app).database.session() as session:
            return list(session.scalars(select(Assignment)))

    def ldap_members(self, group: str) -> list[str]:
        """The group's member DNs, read as slapd's rootdn with ldap3 (not through policyd)."""
        return self.slapd.values(f"cn={group},{GROUPS}", "member")

    def scim_members(self, group_id: str) -> list[str]:
        """The SCIM ids in the group's members, as GET /Groups/{id} returns them."""
        return self.scim.member_values(group_id)

    def events(self, kind: str) -> list[dict[str, Any]]:
        """The verified events of `kind` the receiver applied (each event id once)."""
        return [event for event in self.webhook.events.values() if event["event"] == kind]

    def close(self) -> None:
        parts = components(self.app)
        parts.connectors.close()
        parts.decision_log.close()
        parts.runtime.close()
        database = parts.database
        with database.engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
        database.dispose()


MakeStack = Callable[..., Stack]


@pytest.fixture
def make_stack(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    slapd: Slapd,
    scim_server: ScimServer,
    webhook_server: WebhookServer,
) -> Iterator[MakeStack]:
    """Build a Stack: make_stack(rule_files, clock=..., delivery="worker")."""
    for variable, secret in SECRET_VARIABLES.items():
        monkeypatch.setenv(variable, secret)
    built: list[Stack] = []

    def make(files: dict[str, str], *, clock: Clock, delivery: str = "worker") -> Stack:
        policies = tmp_path / "policies"
        policies.mkdir()
        for name, text in files.items():
            (policies / name).write_text(text, encoding="utf-8")
        connectors = tmp_path / "connectors.yaml"
        connectors.write_text(connectors_file(slapd, scim_server, webhook_server), encoding="utf-8")
        app = create_app(
            {
                "TESTING": True,
                "POLICYD_DATABASE_URL": database_url,
                "POLICYD_POLICIES": str(policies),
                "POLICYD_CONNECTORS": str(connectors),
                "POLICYD_DELIVERY": delivery,
                "POLICYD_CLOCK": clock,
                "POLICYD_AUTO_UPGRADE": True,
            }
        )
        with components(app).database.session() as session:
            _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=clock())
        stack = Stack(
            app=app,
            client=app.test_client(),
            admin={"Authorization": f"Bearer {plain}"},
            clock=clock,
            slapd=slapd,
            scim=scim_server,
            webhook=webhook_server,
            database_url=database_url,
            connectors_path=connectors,
        )
        built.append(stack)
        return stack

    yield make
    for stack in built:
        stack.close()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll `condition` until it is truthy and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


# `policyd worker`, run by the interpreter of the tests with the lease and interval given.
WORKER_SCRIPT = """\
import sys

from policyd.cli import main

main(["worker", "--job-lease", sys.argv[1], "--interval", sys.argv[2]], prog_name="policyd")
"""


class WorkerProcess:
    """`policyd worker` in a subprocess, on the stack's database and connectors file."""

    def __init__(self, stack: Stack, log: Path, *, lease: str = "PT1S", interval: float = 0.2):
        self.log = log
        self.args = [sys.executable, "-c", WORKER_SCRIPT, lease, str(interval)]
        # The secrets come from the environment (set by make_stack), like the rest.
        self.env = {
            **os.environ,
            "POLICYD_DATABASE_URL": stack.database_url,
            "POLICYD_CONNECTORS": str(stack.connectors_path),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        """True while running; fails the test, with its log, if it exited on its own."""
        assert self.process is not None
        code = self.process.poll()
        assert code is None, f"worker exited with {code}:\n{self.output()}"
        return True

    def wait_for(self, condition: Callable[[], Any], what: str) -> None:
        """wait_for(condition) while this worker runs; a failure shows the worker's log."""
        try:
            wait_for(lambda: self.alive() and condition(), what)
        except AssertionError as error:
            raise AssertionError(f"{error}\nworker log:\n{self.output()}") from None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finishing the job in hand, as when a machine dies."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, which the worker handles by stopping after its current sweep."""
        self._end(signal.SIGTERM)

    def _end(self, how: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]
