"""Publications accepted over the API and published by a worker, with a state to poll."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import IllegalTransitionError, PublicationState, transition
from policyd.periodic import TaskContext, periodic_task
from policyd.services.actor import Actor, Role
from policyd.services.audit import audit
from policyd.services.errors import InvalidError, NotFoundError
from policyd.services.versions import VersionService
from policyd.store.models import PolicyPublication
from policyd.store.types import new_id

OBJECT = "policy_publication"


class PublicationService:
    def __init__(self, session: Session):
        self.session = session

    def accept(
        self,
        actor: Actor,
        files: Mapping[str, str],
        *,
        message: str,
        now: datetime,
        git_commit: str | None = None,
        connectors: Mapping[str, str] | None = None,
    ) -> PolicyPublication:
        """Queue `files` for a worker to publish as `publish` would (validate the whole
        bundle, store it, activate it) and return at once.

        Args:
            connectors: instance name -> type, checked against every resource as publishing
                checks them.
        """
        publication = PolicyPublication(
            id=new_id(),
            state=PublicationState.QUEUED,
            files=dict(files),
            message=message,
            git_commit=git_commit,
            connectors=dict(connectors) if connectors is not None else None,
            author=actor.principal,
            created_at=now,
            updated_at=now,
        )
        self.session.add(publication)
        audit(
            self.session,
            actor,
            "publication.accepted",
            (OBJECT, publication.id),
            now=now,
            after={"state": publication.state, "message": message, "files": len(files)},
        )
        self.session.commit()
        return publication

    def get(self, publication_id: str) -> PolicyPublication:
        publication = self.session.get(PolicyPublication, publication_id)
        if publication is None:
            raise NotFoundError(f"no publication {publication_id!r}", field="id")
        return publication

    def publish_queued(self, *, now: datetime, limit: int = 1) -> int:
        """Publish up to `limit` queued publications, oldest first, each in its own
        transaction; returns how many were handled. Workers share them (SKIP LOCKED).

        A bundle with errors is rejected with every `file:line: message` problem.
        """
        handled = 0
        while handled < limit:
            query = (
                select(PolicyPublication)
                .where(PolicyPublication.state == PublicationState.QUEUED)
                .order_by(PolicyPublication.created_at, PolicyPublication.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            publication = self.session.scalars(query).first()
            if publication is None:
                break
            self._publish(publication, now)
            self.session.commit()
            handled += 1
        return handled

    def _publish(self, publication: PolicyPublication, now: datetime) -> None:
        # Published in the name of the admin who sent it; only admins may.
        actor = Actor(publication.author, Role.ADMIN)
        try:
            version = VersionService(self.session).store_and_activate(
                actor,
                publication.files or {},
                message=publication.message,
                now=now,
                git_commit=publication.git_commit,
                connectors=publication.connectors,
            )
        except InvalidError as err:
            self._move(publication, PublicationState.REJECTED, now)
            publication.errors = list(err.errors)
        else:
            self._move(publication, PublicationState.ACTIVE, now)
            publication.version_id = version.id
        publication.files = None  # the version keeps them, or they were refused
        audit(
            self.session,
            actor,
            f"publication.{publication.state}",
            (OBJECT, publication.id),
            now=now,
            before={"state": PublicationState.QUEUED},
            after={"state": publication.state, "errors": len(publication.errors or [])},
            version=publication.version_id,
        )

    def _move(self, publication: PolicyPublication, state: PublicationState, now: datetime) -> None:
        try:
            publication.state = transition(publication.state, state)
        except IllegalTransitionError as err:
            raise InvalidError(str(err), field="id") from None
        publication.updated_at = now


@periodic_task("versions.publish-accepted")
def publish_accepted(context: TaskContext, now: datetime) -> dict[str, int]:
    """Publish a bundle accepted over the API (POST /v1/policy-versions/publications)."""
    with context.sessions() as session:
        return {"published": PublicationService(session).publish_queued(now=now)}
