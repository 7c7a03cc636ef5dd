"""Rendered notifications delivered through the real notifiers: the SMTP server the suite
runs (aiosmtpd) and the webhook receiver, with links, HTML parts and an operator's template."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from policyd.api import create_app
from policyd.api.context import components
from policyd.rules import ProblemsError
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService
from policyd.store.models import Base
from tests.conftest import POLICIES
from tests.connectors.webhook_server import SIGNING_KEY, WebhookServer
from tests.connectors.webhook_server import webhook_server as webhook_server  # fixture
from tests.test_notify import MailServer
from tests.test_notify import mail_server as mail_server  # fixture

PUBLIC = "https://access.example.org"
GERMAN = "Sie haben jetzt {{ request.package_name }}\n\nAntrag {{ request.id }}: {{ link }}\n"


def start(database_url, clock, tmp_path: Path, notifier: str) -> Iterator:
    """An app whose one notifier is `notifier` (a connectors.yaml entry), with a public URL
    and a templates folder that has a German access_granted."""
    config = tmp_path / "connectors.yaml"
    config.write_text(f"apiVersion: policyd/v1\nnotifiers:\n  - {notifier}\n")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "access_granted.de.txt").write_text(GERMAN)
    app = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": str(POLICIES),
            "POLICYD_CLOCK": clock,
            "POLICYD_AUTO_UPGRADE": True,
            "POLICYD_CONNECTORS": str(config),
            "POLICYD_PUBLIC_URL": PUBLIC + "/",
            "POLICYD_NOTIFICATION_TEMPLATES": str(templates),
        }
    )
    with components(app).database.session() as session:
        _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=clock())
    admin = {"Authorization": f"Bearer {plain}"}
    client = app.test_client()
    for user, extra in (("ada", {}), ("bob", {"attributes": {"language": "de-AT"}}), ("carol", {})):
        client.put(
            f"/v1/users/{user}", json={"email": f"{user}@example.org", **extra}, headers=admin
        )
    client.put("/v1/groups/Group.ScopeA.Approvers", json={}, headers=admin)
    for user in ("ada", "carol"):
        client.put(f"/v1/groups/Group.ScopeA.Approvers/members/{user}", headers=admin)
    yield app, client
    components(app).runtime.close()
    with components(app).database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    components(app).database.dispose()


@pytest.fixture
def by_mail(database_url, clock, tmp_path, mail_server: MailServer):
    smtp = (
        f"{{name: mail, type: smtp, settings: {{host: {mail_server.host}, "
        f"port: {mail_server.port}, from: policyd@example.org, starttls: false}}}}"
    )
    yield from start(database_url, clock, tmp_path, smtp)


@pytest.fixture
def by_webhook(database_url, clock, tmp_path, webhook_server: WebhookServer, monkeypatch):
    monkeypatch.setenv("POLICYD_TEST_SIGNING_KEY", SIGNING_KEY)
    hook = (
        f"{{name: chat, type: webhook, settings: {{url: '{webhook_server.url}/notify'}}, "
        "secrets: {signing_key: POLICYD_TEST_SIGNING_KEY}}"
    )
    yield from start(database_url, clock, tmp_path, hook)


def token(app, clock, user):
    with components(app).database.session() as session:
        _, plain = TokenService(session).create(SYSTEM, user, "user", now=clock())
    return {"Authorization": f"Bearer {plain}"}


def received(server: MailServer, to: str) -> list[EmailMessage]:
    return [m for _, m in server.mailbox.received if str(m["To"]) == to]


def test_approvers_get_the_approve_link_in_text_and_html(by_mail, mail_server, clock):
    """The e-mail to an approver is multipart/alternative: text and HTML, both with the
    request's approve link under the public URL."""
    app, client = by_mail
    bob = token(app, clock, "bob")
    request = client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=bob).json
    [mail] = received(mail_server, "ada@example.org")
    assert mail.get_content_type() == "multipart/alternative"
    link = f"{PUBLIC}/requests/{request['id']}/approve"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert f"Approve or deny it: {link}" in text
    assert f'<a href="{link}"' in html


def test_the_requester_gets_the_operators_template_in_their_language(by_mail, mail_server, clock):
    """bob (language de-AT) gets the folder's access_granted.de.txt, plain text only."""
    app, client = by_mail
    bob, carol = token(app, clock, "bob"), token(app, clock, "carol")
    request = client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=bob).json
    client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=carol)
    components(app).worker.sweep(now=clock())
    [mail] = received(mail_server, "bob@example.org")
    assert str(mail["Subject"]) == "Sie haben jetzt Scope A readers (just in time)"
    assert mail.get_content_type() == "text/plain"
    expected = f"Antrag {request['id']}: {PUBLIC}/requests/{request['id']}"
    assert mail.get_content().strip() == expected


def test_the_webhook_notifier_carries_the_rendered_message(by_webhook, webhook_server, clock):
    """The webhook receiver gets subject, text with the link, and the HTML part."""
    app, client = by_webhook
    bob = token(app, clock, "bob")
    request = client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=bob).json
    bodies = sorted((d.body for d in webhook_server.deliveries), key=lambda b: b["to"])
    assert [b["to"] for b in bodies] == [["ada@example.org"], ["carol@example.org"]]
    body = bodies[0]
    assert body["kind"] == "approval_needed"
    assert body["subject"] == "Approval needed: scope-a-readers for bob"
    assert f"{PUBLIC}/requests/{request['id']}/approve" in body["text"]
    assert body["html"].startswith("<!DOCTYPE html>")


def test_the_app_refuses_to_start_with_a_bad_template(database_url, tmp_path):
    """A misspelt variable in the templates folder stops create_app with file:line."""
    (tmp_path / "access_removed.txt").write_text("Ended\n\n{{ asignment.id }}\n")
    with pytest.raises(ProblemsError) as raised:
        create_app(
            {
                "POLICYD_DATABASE_URL": database_url,
                "POLICYD_POLICIES": "",
                "POLICYD_AUTO_UPGRADE": True,
                "POLICYD_NOTIFICATION_TEMPLATES": str(tmp_path),
            }
        )
    assert str(raised.value).startswith(f"{tmp_path / 'access_removed.txt'}:3: UndefinedError")
