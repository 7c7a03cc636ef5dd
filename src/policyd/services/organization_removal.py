"""Removing a connected organisation: its guests lose their access through the connectors."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from policyd.domain import OrganizationState, transition
from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor
from policyd.services.assignments import LIVE_STATES, AssignmentService
from policyd.services.audit import audit
from policyd.services.directory import DirectoryService, lock_user
from policyd.services.directory.organizations import organization_view
from policyd.services.requests import RequestService
from policyd.store.models import Assignment, OrganizationDomain
from policyd.store.query import among


class OrganizationRemoval:
    """Removing a connected organisation, as Entra does when one is deleted: its guests'
    assignments are removed through the connectors (the outbox, with reference counting),
    their open requests canceled and they stop being approvers. What then happens to the
    guests themselves in the connected systems is POLICYD_EXTERNAL_USERS' (the
    `external-users.clean-up` task: disable, then delete after POLICYD_EXTERNAL_DELETE_AFTER),
    as for any guest whose last access ended."""

    def __init__(
        self,
        session: Session,
        runtime: PolicyRuntime | None = None,
        listeners: frozenset[str] = frozenset(),
    ):
        self.session = session
        self.runtime = runtime
        self.listeners = listeners

    def remove_organization(self, actor: Actor, org_id: str, *, now: datetime) -> dict[str, int]:
        """Remove the organisation and end its guests' access; audited, commits.

        Returns:
            How many guests it had, assignments ended, requests canceled, reassigned,
            escalated and denied.

        Raises:
            NotFoundError: no such organisation.
        """
        directory = DirectoryService(self.session)
        org = directory.get_organization(org_id, lock=True)
        before = organization_view(org)
        state = transition(org.state, OrganizationState.REMOVED)
        guests = directory.guests_of(org)
        counts: Counter[str] = Counter(guests=len(guests))
        runtime = self.runtime or PolicyRuntime()
        requests = RequestService(self.session, runtime, self.listeners)
        for guest in guests:
            lock_user(self.session, guest)  # a request being filed for them finishes first
            for outcome, count in requests.withdraw(actor, guest, now=now).items():
                counts[f"requests_{outcome}"] += count
        counts["assignments_ended"] = self._end_access(actor, runtime, guests, now)
        self.session.execute(
            delete(OrganizationDomain).where(OrganizationDomain.organization_id == org_id)
        )
        self.session.delete(org)
        audit(
            self.session,
            actor,
            "directory.organization_removed",
            ("organization", org_id),
            now=now,
            before=before,
            after={**before, "state": state.value, "guests": guests, "ended": dict(counts)},
        )
        self.session.commit()
        return dict(counts)

    def _end_access(
        self, actor: Actor, runtime: PolicyRuntime, guests: list[str], now: datetime
    ) -> int:
        if not guests:
            return 0
        live = self.session.scalars(
            select(Assignment)
            .where(
                among(self.session, Assignment.subject_id, guests),
                Assignment.state.in_(LIVE_STATES),
            )
            .order_by(Assignment.id)
            .with_for_update()
        ).all()
        AssignmentService(self.session, runtime).end_many(
            actor, live, "assignment.organization_removed", now=now
        )
        return len(live)
