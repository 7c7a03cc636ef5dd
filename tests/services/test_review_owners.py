"""Owners and managers told when a review campaign opens on their packages: how many items,
the end and the link; once for an owner who also reviews; those who left not at all."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from policyd.connectors.config import Connectors, load_instances
from policyd.notify.config import Notifiers, load_notifiers
from policyd.services.actor import SYSTEM
from policyd.services.directory import DirectoryService
from policyd.services.memberships import DirectoryMemberships
from policyd.services.messages import Messages
from policyd.services.notifications import message
from policyd.services.review_campaigns import ReviewCampaigns
from policyd.store import Database
from policyd.store.models import Job, ReviewCampaign, User
from policyd.worker import Worker
from tests.review_support import NOW, World, make_world, reviewed_in, reviewed_package
from tests.services.test_review_catalogs import CATALOG, plain_package
from tests.test_notify import MailServer
from tests.test_notify import mail_server as mail_server  # fixture

PUBLIC = "https://access.example.org"
# crm: owned by olivia (the fallback reviewer), managed by sid and the Leads group (gil).
MANAGED = reviewed_package().replace(
    '  owners: ["user:olivia"]',
    '  owners: ["user:olivia"]\n  managers: ["user:sid", "group:Leads"]',
)


def opened_to(session, kind: str) -> dict[str, Job]:
    jobs = session.scalars(select(Job).where(Job.resource.startswith(f"{kind}:"))).all()
    return {job.subject_id: job for job in jobs}


@pytest.fixture
def grant(session, runtime, deliver):
    made = reviewed_in(session, runtime, deliver, MANAGED)
    DirectoryService(session).put_group(SYSTEM, "Leads", "Leads", now=NOW)
    DirectoryService(session).add_member(SYSTEM, "Leads", "gil", now=NOW)
    session.commit()
    return made


def test_owners_and_managers_who_do_not_review_are_told_with_their_count(session, runtime, grant):
    """pat's and sue's manager max reviews; the owner olivia and the managers sid and gil
    (through Leads) each get one review_opened saying the campaign holds 2 items of theirs."""
    grant("crm", "pat", "sue")
    assert ReviewCampaigns(session, runtime).open_due(now=NOW) == 1
    assert sorted(opened_to(session, "review_needed")) == ["max"]
    owners = opened_to(session, "review_opened")
    assert sorted(owners) == ["gil", "olivia", "sid"]
    assert {job.payload["items"] for job in owners.values()} == {2}
    campaign = session.scalar(select(ReviewCampaign.id))
    messages = Messages(public_url=PUBLIC, runtime=runtime)
    session.execute(update(User).where(User.id == "olivia").values(email="olivia@example.org"))
    told = message(session, owners["olivia"].resource, "olivia", messages, owners["olivia"].payload)
    assert told is not None
    assert told.rendered.subject == "Access review opened: CRM, until 2026-01-15 00:00 UTC"
    assert "It holds 2 item(s) in packages you own or manage." in told.rendered.text
    assert f"See the campaign: {PUBLIC}/reviews/campaigns/{campaign}" in told.rendered.text
    assert told.rendered.html is not None and "See the campaign" in told.rendered.html


def test_an_owner_who_also_reviews_gets_one_message(session, runtime, grant):
    """quinn has no manager: olivia reviews his access (the fallback), so she gets
    review_needed only; the managers still get review_opened."""
    grant("crm", "pat", "quinn")
    ReviewCampaigns(session, runtime).open_due(now=NOW)
    assert sorted(opened_to(session, "review_needed")) == ["max", "olivia"]
    assert sorted(opened_to(session, "review_opened")) == ["gil", "sid"]


def test_owners_and_managers_who_left_are_not_told(session, runtime, grant):
    """sid has left: only olivia and gil hear of the campaign."""
    grant("crm", "pat")
    session.execute(update(User).where(User.id == "sid").values(state="disabled"))
    ReviewCampaigns(session, runtime).open_due(now=NOW)
    assert sorted(opened_to(session, "review_opened")) == ["gil", "olivia"]


def test_a_catalog_review_tells_the_catalog_owners_who_do_not_review(session, runtime, deliver):
    """The sales catalog's review is decided by a group; its owner sid is told of the 3
    items in wiki and leads."""
    by_group = CATALOG.replace("reviewers: [owners]", 'reviewers: ["group:Leads"]')
    grant = reviewed_in(
        session, runtime, deliver, by_group, plain_package("wiki"), plain_package("leads")
    )
    DirectoryService(session).put_group(SYSTEM, "Leads", "Leads", now=NOW)
    DirectoryService(session).add_member(SYSTEM, "Leads", "gil", now=NOW)
    session.execute(update(User).where(User.id == "sid").values(email="sid@example.org"))
    grant("wiki", "pat", "sue")
    grant("leads", "quinn")
    assert ReviewCampaigns(session, runtime).open_due(now=NOW) == 1
    owners = opened_to(session, "review_opened")
    assert sorted(owners) == ["sid"] and owners["sid"].payload == {"items": 3}
    told = message(
        session, owners["sid"].resource, "sid", Messages(runtime=runtime), owners["sid"].payload
    )
    assert told is not None and told.rendered.subject.startswith("Access review opened: Sales,")


@pytest.fixture
def world(store: Database, tmp_path, mail_server: MailServer) -> Iterator[World]:
    """crm as above, and a worker that sends through the suite's SMTP server."""
    config = tmp_path / "connectors.yaml"
    config.write_text(
        "apiVersion: policyd/v1\nnotifiers:\n"
        f"  - {{name: mail, type: smtp, settings: {{host: {mail_server.host}, "
        f"port: {mail_server.port}, from: policyd@example.org, starttls: false}}}}\n"
    )
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    made = make_world(store, connectors, MANAGED)
    made.worker = Worker(
        store.session,
        connectors,
        made.runtime,
        notifiers=Notifiers(load_notifiers(config)),
        messages=Messages(public_url=PUBLIC, runtime=made.runtime),
    )
    made.people({u: {"email": f"{u}@example.org"} for u in ("olivia", "sid", "quinn")})
    made.people({"pat": {"email": "pat@example.org", "manager_id": "max"}})
    made.people({"max": {"email": "max@example.org"}})
    yield made
    connectors.close()
    made.runtime.close()


def test_the_owners_message_is_delivered_by_mail(world: World, mail_server: MailServer):
    """Opening the campaign and running the outbox mails max the review and olivia and sid
    the opening, each once, with the campaign's link."""
    world.grant("crm", "pat")
    with world.session() as session:
        assert ReviewCampaigns(session, world.runtime).open_due(now=NOW) == 1
        campaign = session.scalar(select(ReviewCampaign.id))
    world.worker.run_jobs(now=NOW, limit=100)
    received = mail_server.mailbox.received
    sent = sorted(
        (str(m["To"]), str(m["Subject"])) for _, m in received if "review" in m["Subject"]
    )
    assert sent == [
        ("max@example.org", "Access review: crm, until 2026-01-15 00:00 UTC"),
        ("olivia@example.org", "Access review opened: CRM, until 2026-01-15 00:00 UTC"),
        ("sid@example.org", "Access review opened: CRM, until 2026-01-15 00:00 UTC"),
    ]
    olivia = next(m for _, m in mail_server.mailbox.received if "olivia" in str(m["To"]))
    text = olivia.get_body(("plain",)).get_content()
    assert f"{PUBLIC}/reviews/campaigns/{campaign}" in text
