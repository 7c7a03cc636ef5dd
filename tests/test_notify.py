"""Notifiers against real servers on loopback: aiosmtpd for e-mail, the webhook receiver."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policyd.notify import (
    Notification,
    Notifier,
    NotifierContext,
    NotifyError,
    create_notifier,
    registry,
    smtp,
    webhook,
)
from policyd.notify.smtp import SmtpNotifier
from tests.connectors.webhook_server import SIGNING_KEY, WebhookServer
from tests.connectors.webhook_server import webhook_server as webhook_server  # fixture

USER, PASSWORD = "policyd", "mail-secret"
APPROVAL = Notification(
    to=["ada@example.org", "grace@example.org"],
    subject="Approve payroll access for Alan",
    text="Alan asks for payroll/approver.\nApprove or deny it in policyd.\n",
    kind="request.approval-needed",
    id="n-1",
)


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps every message; `answer` replaces the DATA reply."""

    received: list[tuple[Envelope, EmailMessage]]
    answer: str = "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.answer.startswith("250"):
            parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            self.received.append((envelope, parsed))
        return self.answer


def authenticate(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


def free_port() -> int:
    # aiosmtpd cannot bind port 0: it connects to its own port to know it is up.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)  # TLS checks validity against the real clock
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


@dataclass
class MailServer:
    host: str
    port: int
    mailbox: Mailbox


def serve(mailbox: Mailbox, **options: Any) -> Iterator[MailServer]:
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield MailServer("127.0.0.1", controller.port, mailbox)
    finally:
        controller.stop()


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    """A plain SMTP relay: no TLS, no login."""
    yield from serve(Mailbox([]))


@pytest.fixture
def tls_mail_server(certificate: tuple[Path, Path]) -> Iterator[MailServer]:
    """A submission server that requires STARTTLS and then a login."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    yield from serve(
        Mailbox([]),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )


def smtp_notifier(server: MailServer, secrets: dict[str, str] | None = None, **settings: Any):
    settings = {
        "host": server.host,
        "port": server.port,
        "from": "policyd <policyd@example.org>",
        "starttls": False,
        **settings,
    }
    return smtp.create(NotifierContext("mail", settings=settings, secrets=secrets or {}))


def test_smtp_delivers_to_every_recipient(mail_server: MailServer):
    """The relay receives one message with the recipients, subject and text."""
    notifier = smtp_notifier(mail_server)
    assert isinstance(notifier, Notifier)
    notifier.send(APPROVAL)
    [(envelope, message)] = mail_server.mailbox.received
    assert envelope.mail_from == "policyd@example.org"
    assert envelope.rcpt_tos == ["ada@example.org", "grace@example.org"]
    assert message["To"] == "ada@example.org, grace@example.org"
    assert message["Subject"] == "Approve payroll access for Alan"
    assert message.get_content().replace("\r\n", "\n") == APPROVAL.text  # CRLF on the wire
    assert message["Message-ID"] == "<n-1@example.org>"
    assert message["X-Policyd-Kind"] == "request.approval-needed"
    assert message["Auto-Submitted"] == "auto-generated"


def test_smtp_dates_the_message_with_its_clock(mail_server: MailServer, clock):
    """The Date header comes from the notifier's clock, not from deep inside."""
    notifier = SmtpNotifier(
        "mail",
        mail_server.host,
        "policyd@example.org",
        port=mail_server.port,
        starttls=False,
        clock=clock,
    )
    notifier.send(APPROVAL)
    [(_, message)] = mail_server.mailbox.received
    assert message["Date"].datetime == clock()


def test_smtp_folds_a_multi_line_subject_into_one(mail_server: MailServer):
    """A line break in the subject cannot start a new header."""
    injected = Notification(["ada@example.org"], "Hi\r\nBcc: eve@example.org", "x", "test")
    smtp_notifier(mail_server).send(injected)
    [(envelope, message)] = mail_server.mailbox.received
    assert message["Subject"] == "Hi Bcc: eve@example.org"
    assert envelope.rcpt_tos == ["ada@example.org"]


def test_smtp_refuses_a_recipient_with_a_line_break(mail_server: MailServer):
    """A recipient that would inject a header is refused before connecting."""
    injected = Notification(["ada@example.org\r\nBcc: eve@example.org"], "Hi", "x", "test")
    with pytest.raises(NotifyError) as caught:
        smtp_notifier(mail_server).send(injected)
    assert caught.value.retryable is False
    assert mail_server.mailbox.received == []


def test_smtp_refuses_a_notification_without_recipients(mail_server: MailServer):
    """Nobody to tell is an error that retrying cannot fix."""
    with pytest.raises(NotifyError, match="no recipients") as caught:
        smtp_notifier(mail_server).send(Notification([], "Hi", "x", "test"))
    assert caught.value.retryable is False


def test_smtp_logs_in_after_starttls(tls_mail_server: MailServer, certificate: tuple[Path, Path]):
    """With starttls and a username the message goes through an encrypted, logged-in session."""
    notifier = smtp_notifier(
        tls_mail_server,
        {"password": PASSWORD},
        starttls=True,
        username=USER,
        ca_file=str(certificate[0]),
    )
    notifier.send(APPROVAL)
    [(envelope, message)] = tls_mail_server.mailbox.received
    assert envelope.rcpt_tos == list(APPROVAL.to)
    assert message["Subject"] == APPROVAL.subject


def test_smtp_wrong_password_is_not_retryable(
    tls_mail_server: MailServer, certificate: tuple[Path, Path]
):
    """A refused login fails at once instead of retrying."""
    notifier = smtp_notifier(
        tls_mail_server,
        {"password": "wrong"},
        starttls=True,
        username=USER,
        ca_file=str(certificate[0]),
    )
    with pytest.raises(NotifyError, match="535") as caught:
        notifier.send(APPROVAL)
    assert caught.value.retryable is False


def test_smtp_untrusted_certificate_is_not_retryable(tls_mail_server: MailServer):
    """A server certificate no trusted CA signed is a configuration error."""
    notifier = smtp_notifier(tls_mail_server, {"password": PASSWORD}, starttls=True, username=USER)
    with pytest.raises(NotifyError, match="SSLCertVerificationError") as caught:
        notifier.send(APPROVAL)
    assert caught.value.retryable is False


def test_smtp_without_starttls_where_required_is_not_retryable(tls_mail_server: MailServer):
    """A server that demands STARTTLS refuses a plain session for good."""
    with pytest.raises(NotifyError, match="530") as caught:
        smtp_notifier(tls_mail_server).send(APPROVAL)
    assert caught.value.retryable is False


def test_smtp_temporary_rejection_is_retryable(mail_server: MailServer):
    """A 4xx answer to the message is retryable."""
    mail_server.mailbox.answer = "451 4.3.0 try again later"
    with pytest.raises(NotifyError, match="451") as caught:
        smtp_notifier(mail_server).send(APPROVAL)
    assert caught.value.retryable is True


def test_smtp_permanent_rejection_is_not_retryable(mail_server: MailServer):
    """A 5xx answer to the message is not retryable."""
    mail_server.mailbox.answer = "554 5.7.1 rejected as spam"
    with pytest.raises(NotifyError, match="554") as caught:
        smtp_notifier(mail_server).send(APPROVAL)
    assert caught.value.retryable is False


def test_smtp_refused_connection_is_retryable():
    """A relay that is down raises a retryable NotifyError."""
    server = MailServer("127.0.0.1", free_port(), Mailbox([]))
    with pytest.raises(NotifyError, match="ConnectionRefusedError") as caught:
        smtp_notifier(server).send(APPROVAL)
    assert caught.value.retryable is True


def test_smtp_silent_server_times_out_retryably():
    """A server that accepts the connection but never greets raises a retryable NotifyError."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        server = MailServer("127.0.0.1", silent.getsockname()[1], Mailbox([]))
        with pytest.raises(NotifyError, match="timed out") as caught:
            smtp_notifier(server, timeout=0.2).send(APPROVAL)
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("settings", "secrets", "message"),
    [
        ({"from": "policyd@example.org"}, {}, "'host'"),
        ({"host": "mail.example.org"}, {}, "'from'"),
        ({"host": "mail.example.org", "from": "policyd"}, {}, "'from'"),
        ({"host": "mail.example.org", "from": "p@example.org", "port": "25"}, {}, "'port'"),
        ({"host": "mail.example.org", "from": "p@example.org", "starttls": "yes"}, {}, "starttls"),
        ({"host": "mail.example.org", "from": "p@example.org", "tls": True}, {}, "unknown"),
        ({"host": "mail.example.org", "from": "p@example.org", "username": "u"}, {}, "password"),
        (
            {"host": "m.example.org", "from": "p@example.org", "username": "u", "starttls": False},
            {"password": "p"},
            "in clear",
        ),
        ({"host": "m.example.org", "from": "p@example.org", "ca_file": "/nonexistent"}, {}, "ca"),
    ],
)
def test_smtp_bad_configuration_is_not_retryable(
    settings: dict[str, Any], secrets: dict[str, str], message: str
):
    """Wrong settings fail creation with a non-retryable error naming the setting."""
    with pytest.raises(NotifyError, match=message) as caught:
        smtp.create(NotifierContext("mail", settings=settings, secrets=secrets))
    assert caught.value.retryable is False


def webhook_notifier(server: WebhookServer, key: str = SIGNING_KEY) -> Notifier:
    settings = {"url": f"{server.url}/notifications", "timeout": 2}
    return webhook.create(NotifierContext("chat", settings=settings, secrets={"signing_key": key}))


def test_webhook_notifier_posts_a_signed_notification(webhook_server: WebhookServer):
    """The receiver verifies the signature and gets the notification as an event."""
    webhook_notifier(webhook_server).send(APPROVAL)
    [delivery] = webhook_server.deliveries
    assert webhook_server.rejected == 0
    assert delivery.body == {
        "event": "notification",
        "id": "n-1",
        "timestamp": delivery.body["timestamp"],
        "kind": "request.approval-needed",
        "to": ["ada@example.org", "grace@example.org"],
        "subject": APPROVAL.subject,
        "text": APPROVAL.text,
    }


def test_webhook_notifier_retry_carries_the_same_event_id(webhook_server: WebhookServer):
    """Sending the same notification again lets the receiver drop the duplicate."""
    notifier = webhook_notifier(webhook_server)
    notifier.send(APPROVAL)
    notifier.send(APPROVAL)
    assert len(webhook_server.deliveries) == 2
    assert list(webhook_server.events) == ["n-1"]


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (429, True), (400, False)])
def test_webhook_notifier_errors_say_whether_to_retry(
    webhook_server: WebhookServer, status: int, retryable: bool
):
    """Receiver errors become NotifyError with the connector's retry rules."""
    webhook_server.answer = status
    with pytest.raises(NotifyError, match=f"HTTP {status}") as caught:
        webhook_notifier(webhook_server).send(APPROVAL)
    assert caught.value.retryable is retryable


def test_webhook_notifier_needs_a_signing_key(webhook_server: WebhookServer):
    """Without a signing key the notifier is not created."""
    with pytest.raises(NotifyError, match=r"webhook notifier 'chat'.*signing_key") as caught:
        webhook_notifier(webhook_server, key="")
    assert caught.value.retryable is False


def test_notifications_get_distinct_ids_by_default():
    """Two notifications built without an id are two different events."""
    first = Notification(["ada@example.org"], "Hi", "x", "test")
    second = Notification(["ada@example.org"], "Hi", "x", "test")
    assert first.id != second.id
    assert first.to == ("ada@example.org",)


@pytest.fixture
def notifier_registry() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


@pytest.mark.usefixtures("notifier_registry")
def test_registry_creates_a_registered_type(mail_server: MailServer):
    """A type registered by hand is created by name like an entry-point type."""
    registry.register("test-smtp", smtp.create)
    settings = {"host": mail_server.host, "port": mail_server.port, "from": "p@example.org"}
    notifier = create_notifier(
        "test-smtp", NotifierContext("mail", settings={**settings, "starttls": False})
    )
    notifier.send(APPROVAL)
    assert len(mail_server.mailbox.received) == 1


@pytest.mark.usefixtures("notifier_registry")
def test_registry_names_the_installed_types_for_an_unknown_one():
    """Asking for a type nobody installed fails with a LookupError."""
    with pytest.raises(LookupError, match="unknown notifier type 'pager'"):
        create_notifier("pager", NotifierContext("x"))
