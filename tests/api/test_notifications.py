"""Notifications through a real SMTP server: approvers, requesters, expiry reminders once."""

from __future__ import annotations

import pytest

from policyd.api import create_app
from policyd.api.context import components
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from policyd.store.models import Base
from tests.conftest import POLICIES
from tests.test_notify import MailServer
from tests.test_notify import mail_server as mail_server  # fixture


@pytest.fixture
def notified(database_url, clock, tmp_path, mail_server: MailServer):
    config = tmp_path / "connectors.yaml"
    config.write_text(
        "apiVersion: policyd/v1\nnotifiers:\n"
        f"  - {{name: mail, type: smtp, settings: {{host: {mail_server.host}, "
        f"port: {mail_server.port}, from: policyd@example.org, starttls: false}}}}\n"
    )
    app = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": str(POLICIES),
            "POLICYD_CLOCK": clock,
            "POLICYD_AUTO_UPGRADE": True,
            "POLICYD_CONNECTORS": str(config),
        }
    )
    with components(app).database.session() as session:
        _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=clock())
    admin = {"Authorization": f"Bearer {plain}"}
    client = app.test_client()
    for user in ("ada", "bob", "carol", "fab"):
        body = {"email": f"{user}@example.org", "type": "guest" if user == "fab" else "member"}
        client.put(f"/v1/users/{user}", json=body, headers=admin)
    client.put("/v1/groups/Group.ScopeA.Approvers", json={}, headers=admin)
    for user in ("ada", "carol"):
        client.put(f"/v1/groups/Group.ScopeA.Approvers/members/{user}", headers=admin)
    yield app, client, admin
    components(app).runtime.close()
    with components(app).database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    components(app).database.dispose()


def mails(server: MailServer) -> list[tuple[str, str]]:
    return sorted((str(m["To"]), str(m["Subject"])) for _, m in server.mailbox.received)


def token(app, clock, user):
    with components(app).database.session() as session:
        _, plain = TokenService(session).create(SYSTEM, user, "user", now=clock())
    return {"Authorization": f"Bearer {plain}"}


def test_approvers_and_the_requester_are_told(notified, mail_server, clock):
    """Approvers hear that a request waits; the requester hears when access is delivered."""
    app, client, _ = notified
    bob = token(app, clock, "bob")
    request = client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=bob).json
    assert mails(mail_server) == [
        ("ada@example.org", "Approval needed: scope-a-readers for bob"),
        ("carol@example.org", "Approval needed: scope-a-readers for bob"),
    ]
    carol = token(app, clock, "carol")
    client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=carol)
    components(app).worker.sweep(now=clock())
    assert ("bob@example.org", "You now have scope-a-readers") in mails(mail_server)
    body = next(m for _, m in mail_server.mailbox.received if "bob" in str(m["To"]))
    assert "ends 2026-01-05 17:00 UTC" in body.get_content()


def test_expiry_reminders_are_sent_once_each(notified, mail_server, clock):
    """A 30-day assignment gets one reminder 14 days and one 1 day before it ends."""
    app, client, admin = notified
    client.put("/v1/users/fab", json={"email": "fab@fabrikam.com", "type": "guest"}, headers=admin)
    fab = token(app, clock, "fab")
    created = client.post("/v1/requests", json={"package": "merger-collaboration"}, headers=fab)
    assert created.json["state"] == "delivered"
    worker = components(app).worker
    worker.sweep(now=clock())
    clock.advance(days=16, seconds=1)
    assert worker.sweep(now=clock())["reminders"] == 1
    assert worker.sweep(now=clock())["reminders"] == 0
    clock.advance(days=13)
    assert worker.sweep(now=clock())["reminders"] == 1
    reminders = [s for to, s in mails(mail_server) if s.startswith("Your access to")]
    assert reminders == [
        "Your access to merger-collaboration ends 2026-02-04 09:00 UTC",
        "Your access to merger-collaboration ends 2026-02-04 09:00 UTC",
    ]
