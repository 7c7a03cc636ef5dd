"""Publications: accepted at once, published by a worker (active or rejected), audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.periodic import TaskContext
from policyd.services.errors import InvalidError, NotFoundError
from policyd.services.publications import PublicationService, PublicationState, publish_accepted
from policyd.services.versions import VersionService
from policyd.store.models import AuditRecord, PolicyPublication
from tests.services.conftest import ROOT

BROKEN = {"broken.yaml": "apiVersion: policyd/v1\npackage: {id: x}\n"}


@pytest.fixture
def publications(session) -> PublicationService:
    return PublicationService(session)


def actions(session, publication_id: str) -> list[str]:
    query = (
        select(AuditRecord.action)
        .where(AuditRecord.object_id == publication_id)
        .order_by(AuditRecord.id)
    )
    return list(session.scalars(query))


def test_accepting_queues_the_files_and_audits_it(session, publications, example_bundle, clock):
    """accept returns a queued publication at once; nothing is active yet."""
    accepted = publications.accept(ROOT, example_bundle.files, message="first", now=clock())
    assert (accepted.state, accepted.author, accepted.version_id) == ("queued", "root", None)
    assert publications.get(accepted.id) is accepted
    assert actions(session, accepted.id) == ["publication.accepted"]
    assert VersionService(session).active_id() is None


def test_a_worker_publishes_a_valid_bundle_and_activates_it(
    session, publications, example_bundle, clock
):
    """The queued bundle becomes the active version; its files move to the version."""
    accepted = publications.accept(ROOT, example_bundle.files, message="first", now=clock())
    clock.advance(minutes=1)
    assert publications.publish_queued(now=clock()) == 1
    published = publications.get(accepted.id)
    assert (published.state, published.files, published.updated_at) == ("active", None, clock())
    assert published.version_id == VersionService(session).active_id() is not None
    assert actions(session, accepted.id) == ["publication.accepted", "publication.active"]


def test_a_bundle_with_errors_is_rejected_with_each_problem(session, publications, clock):
    """Nothing is stored: the publication is rejected, its errors name file and line."""
    accepted = publications.accept(ROOT, BROKEN, message="bad", now=clock())
    assert publications.publish_queued(now=clock()) == 1
    rejected = publications.get(accepted.id)
    assert (rejected.state, rejected.version_id, rejected.files) == ("rejected", None, None)
    assert rejected.errors and all(error.startswith("broken.yaml:") for error in rejected.errors)
    assert actions(session, accepted.id)[-1] == "publication.rejected"
    assert VersionService(session).active_id() is None


def test_queued_publications_go_oldest_first_up_to_the_limit(
    session, publications, example_bundle, clock
):
    """Two queued, limit one: the older is published, the newer waits for the next run."""
    older = publications.accept(ROOT, BROKEN, message="older", now=clock())
    clock.advance(seconds=1)
    newer = publications.accept(ROOT, example_bundle.files, message="newer", now=clock())
    assert publications.publish_queued(now=clock(), limit=1) == 1
    assert (publications.get(older.id).state, publications.get(newer.id).state) == (
        "rejected",
        "queued",
    )
    assert publications.publish_queued(now=clock(), limit=5) == 1
    assert publications.publish_queued(now=clock()) == 0


def test_an_unknown_publication_is_not_found_naming_id(publications):
    with pytest.raises(NotFoundError) as err:
        publications.get("nope")
    assert err.value.field == "id"


def test_a_publication_moves_only_once(session, publications, example_bundle, clock):
    """A published publication cannot become rejected: 422 naming `id`."""
    accepted = publications.accept(ROOT, example_bundle.files, message="m", now=clock())
    publications.publish_queued(now=clock())
    with pytest.raises(InvalidError) as err:
        publications._move(accepted, PublicationState.REJECTED, clock())
    assert err.value.field == "id"


def test_the_periodic_task_publishes_what_was_accepted(
    session, publications, example_bundle, clock
):
    """versions.publish-accepted publishes one queued bundle a run."""
    publications.accept(ROOT, example_bundle.files, message="m", now=clock())

    def sessions() -> Session:
        return Session(bind=session.connection(), join_transaction_mode="create_savepoint")

    now = clock() + timedelta(seconds=5)
    assert publish_accepted(TaskContext(sessions=sessions), now) == {"published": 1}
    session.expire_all()
    assert session.scalars(select(PolicyPublication.state)).one() == "active"
