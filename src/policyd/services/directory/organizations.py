"""Connected organisations: their domains and sponsors, and the one a subject belongs to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from policyd.domain import Subject
from policyd.services.actor import Actor
from policyd.services.audit import audit
from policyd.services.directory.base import DirectoryPart, check_id
from policyd.services.errors import ConflictError, NotFoundError
from policyd.store.models import ConnectedOrganization, OrganizationDomain
from policyd.store.query import page


class Organizations(DirectoryPart):
    """The connected organisations part of DirectoryService."""

    def list_organizations(
        self, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[ConnectedOrganization], int]:
        query = select(ConnectedOrganization).order_by(ConnectedOrganization.id)
        return page(self.session, query, offset, limit)

    def get_organization(self, org_id: str) -> ConnectedOrganization:
        """One connected organisation.

        Raises:
            NotFoundError: no such organisation.
        """
        org = self.session.get(ConnectedOrganization, org_id)
        if org is None:
            raise NotFoundError(f"no connected organization {org_id!r}", field="id")
        return org

    def put_organization(
        self,
        actor: Actor,
        org_id: str,
        data: dict[str, Any],
        *,
        now: datetime,
        keep_missing: bool = False,
    ) -> ConnectedOrganization:
        """Create or replace a connected organisation; with `keep_missing`, fields absent
        from `data` keep an existing organisation's value."""
        check_id(org_id)
        org = self.session.get(ConnectedOrganization, org_id)
        fields = ("display_name", "domains", "internal_sponsors", "external_sponsors", "state")
        before = {f: getattr(org, f) for f in fields} if org else None
        if org is None:
            org = ConnectedOrganization(id=org_id)
            self.session.add(org)
        elif keep_missing:
            data = {**before, **data}
        org.display_name = data.get("display_name", org_id)
        org.domains = sorted({d.strip().lower() for d in data.get("domains", []) if d.strip()})
        self._claim_domains(org_id, org.domains)
        org.internal_sponsors = list(data.get("internal_sponsors", []))
        org.external_sponsors = list(data.get("external_sponsors", []))
        org.state = data.get("state", "configured")
        audit(
            self.session,
            actor,
            "directory.organization_updated" if before else "directory.organization_created",
            ("organization", org_id),
            now=now,
            before=before,
            after={f: getattr(org, f) for f in fields},
        )
        return org

    def _claim_domains(self, org_id: str, domains: list[str]) -> None:
        taken = self.session.scalars(
            select(OrganizationDomain).where(
                OrganizationDomain.domain.in_(domains),
                OrganizationDomain.organization_id != org_id,
            )
        ).first()
        if taken is not None:
            raise ConflictError(
                f"domain {taken.domain!r} belongs to organization {taken.organization_id!r}",
                field="domains",
            )
        self.session.execute(
            delete(OrganizationDomain).where(OrganizationDomain.organization_id == org_id)
        )
        self.session.flush()
        self.session.add_all(OrganizationDomain(domain=d, organization_id=org_id) for d in domains)

    def organization_for(self, subject: Subject) -> ConnectedOrganization | None:
        """The subject's connected organisation: set on the user, or owning their domain."""
        org_id = subject.organization
        if not org_id and subject.domain:
            org_id = self.session.scalar(
                select(OrganizationDomain.organization_id).where(
                    OrganizationDomain.domain == subject.domain
                )
            )
        return self.session.get(ConnectedOrganization, org_id) if org_id else None
