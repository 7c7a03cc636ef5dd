"""What a notification says, read when it is sent: the recipient's own review items, names,
links under the public URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from policyd.connectors.config import Connectors, load_instances
from policyd.services.memberships import DirectoryMemberships
from policyd.services.messages import Messages
from policyd.services.notifications import message
from policyd.services.reviews import ReviewService
from policyd.store import Database
from policyd.store.models import Job, ReviewCampaign
from tests.review_support import NOW, World, make_world, reviewed_package

PEOPLE = {
    "pat": {"email": "pat@example.org", "manager_id": "max"},
    "sue": {"email": "sue@example.org", "manager_id": "max"},
    "quinn": {"email": "quinn@example.org"},
    "max": {"email": "max@example.org", "display_name": "Max Manager"},
    "olivia": {"email": "olivia@example.org", "attributes": {"language": "fr"}},
}


@pytest.fixture
def world(store: Database) -> Iterator[World]:
    """crm, reviewed by the holders' managers, else its owner olivia."""
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    made = make_world(store, connectors, reviewed_package())
    made.people(PEOPLE)
    yield made
    connectors.close()
    made.runtime.close()


def test_each_reviewer_is_told_how_many_items_wait_for_them(world: World):
    """max reviews pat's and sue's access, the owner olivia quinn's (who has no manager):
    each review_needed counts the recipient's own items and links to the campaign."""
    world.grant("crm", "pat", "sue", "quinn")
    with world.session() as session:
        assert ReviewService(session, world.runtime).open_due(now=NOW) == 1
        campaign = session.scalar(select(ReviewCampaign.id))
        told = sorted(
            session.scalars(
                select(Job.subject_id).where(Job.resource == f"review_needed:{campaign}")
            )
        )
        assert told == ["max", "olivia"]
        messages = Messages(public_url="https://access.example.org", runtime=world.runtime)
        to_max = message(session, f"review_needed:{campaign}", "max", messages)
        to_olivia = message(session, f"review_needed:{campaign}", "olivia", messages)
    assert to_max is not None and to_olivia is not None
    assert "2 item(s) wait for you" in to_max.rendered.text
    assert "1 item(s) wait for you" in to_olivia.rendered.text  # no French template: default
    link = f"https://access.example.org/reviews/campaigns/{campaign}"
    assert f"Review them: {link}" in to_max.rendered.text
    assert to_max.rendered.html is not None and "Sent by policyd to max@example.org" in (
        to_max.rendered.html
    )
    assert to_max.rendered.subject == "Access review: crm, until 2026-01-15 00:00 UTC"
