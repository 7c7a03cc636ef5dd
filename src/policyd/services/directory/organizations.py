"""Connected organisations: their domains and sponsors, and the one a subject belongs to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from policyd.domain import OrganizationState, Subject, UserType, transition
from policyd.services.actor import Actor
from policyd.services.audit import audit
from policyd.services.directory.base import DirectoryPart, check_id
from policyd.services.errors import ConflictError, InvalidError, NotFoundError
from policyd.store.models import ConnectedOrganization, OrganizationDomain, User
from policyd.store.query import page

MAX_DOMAIN = 253  # the domain column's length, DNS's limit
FIELDS = ("display_name", "domains", "internal_sponsors", "external_sponsors", "state")


class Organizations(DirectoryPart):
    """The connected organisations part of DirectoryService."""

    def list_organizations(
        self, *, state: str | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[ConnectedOrganization], int]:
        """A page of the connected organisations by id, only those in `state` if given."""
        query = select(ConnectedOrganization).order_by(ConnectedOrganization.id)
        if state is not None:
            query = query.where(ConnectedOrganization.state == state)
        return page(self.session, query, offset, limit)

    def get_organization(self, org_id: str, *, lock: bool = False) -> ConnectedOrganization:
        """One connected organisation (its row locked until commit with `lock`).

        Raises:
            NotFoundError: no such organisation.
        """
        org = self.session.get(ConnectedOrganization, org_id, with_for_update=lock or None)
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
        from `data` keep an existing organisation's value.

        Raises:
            InvalidError: a domain longer than 253 characters, a sponsor id that is no id,
                or the state `removed` (removal is `OrganizationRemoval`'s).
            ConflictError: another organisation owns one of the domains.
            IllegalTransitionError: the state may not change so.
        """
        check_id(org_id)
        org = self.session.get(ConnectedOrganization, org_id)
        before = organization_view(org) if org else None
        if before is not None and keep_missing:
            data = {**before, **data}
        domains = sorted({d.strip().lower() for d in data.get("domains", []) if d.strip()})
        sponsors = {k: list(data.get(k, [])) for k in ("internal_sponsors", "external_sponsors")}
        state = _settable_state(data.get("state", OrganizationState.CONFIGURED))
        _check_values(domains, sponsors)
        if org is None:
            org = ConnectedOrganization(id=org_id)
            self.session.add(org)
        org.display_name = data.get("display_name", org_id)
        org.domains = domains
        self._claim_domains(org_id, org.domains)
        org.internal_sponsors = sponsors["internal_sponsors"]
        org.external_sponsors = sponsors["external_sponsors"]
        org.state = transition(before["state"], state) if before else state
        audit(
            self.session,
            actor,
            "directory.organization_updated" if before else "directory.organization_created",
            ("organization", org_id),
            now=now,
            before=before,
            after=organization_view(org),
        )
        return org

    def _claim_domains(self, org_id: str, domains: list[str]) -> None:
        """Make `domains` the organisation's.

        Raises:
            ConflictError: another organisation owns one, or a transaction that has not
                committed yet is claiming it (a request proposing it, say): the insert waits
                for it and then finds the domain taken.
        """
        taken = self.session.scalars(
            select(OrganizationDomain).where(
                OrganizationDomain.domain.in_(domains),
                OrganizationDomain.organization_id != org_id,
            )
        ).first()
        if taken is not None:
            raise _taken(taken.domain, taken.organization_id)
        self.session.execute(
            delete(OrganizationDomain).where(OrganizationDomain.organization_id == org_id)
        )
        self.session.flush()
        for domain in domains:
            if not self._insert_new(
                OrganizationDomain, {"domain": domain, "organization_id": org_id}
            ):
                owner = self.session.scalar(
                    select(OrganizationDomain.organization_id).where(
                        OrganizationDomain.domain == domain
                    )
                )
                raise _taken(domain, owner)

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

    def propose_organization(
        self, actor: Actor, subject: Subject, *, now: datetime
    ) -> ConnectedOrganization | None:
        """The connected organisation proposed for a guest from a domain no organisation
        owns, as Entra proposes one when such a guest requests access; None for anyone else
        (a member, a guest set on an organisation or from a known domain, no e-mail domain).

        One per domain, named by it: of requests filed at the same moment, one inserts it
        (audited) and the others find it, each with an insert that does nothing on conflict
        (on PostgreSQL it waits for the first one's commit). The caller commits.
        """
        domain = subject.domain
        if subject.type is not UserType.GUEST or subject.organization or not domain:
            return None
        if self.session.get(OrganizationDomain, domain) is not None or len(domain) > 200:
            return None
        added = self._insert_new(
            ConnectedOrganization,
            {
                "id": domain,
                "display_name": domain,
                "domains": [domain],
                "internal_sponsors": [],
                "external_sponsors": [],
                "state": OrganizationState.PROPOSED.value,
            },
        )
        # An organisation already named like the domain that does not own it stays as it is.
        if not added or not self._insert_new(
            OrganizationDomain, {"domain": domain, "organization_id": domain}
        ):
            return None
        org = self.session.get(ConnectedOrganization, domain)
        audit(
            self.session,
            actor,
            "directory.organization_proposed",
            ("organization", domain),
            now=now,
            after={**organization_view(org), "requested_for": subject.id},
        )
        return org

    def _insert_new(self, model: type, row: dict[str, Any]) -> bool:
        """Insert `row` unless its key is taken (then nothing); whether it was inserted."""
        dialect = self.session.get_bind().dialect.name
        insert: Insert = (postgresql if dialect == "postgresql" else sqlite).insert(model)
        key = model.__table__.primary_key.columns.values()[0]
        statement = insert.values(**row).on_conflict_do_nothing().returning(key)
        return self.session.execute(statement).first() is not None

    def guests_of(self, org: ConnectedOrganization) -> list[str]:
        """The ids of the guests of `org`: set on it, or without an organisation and with an
        e-mail address at one of its domains."""
        by_domain = [
            func.lower(User.email).endswith(f"@{domain}", autoescape=True) for domain in org.domains
        ]
        member = User.organization_id == org.id
        if by_domain:
            member = member | (User.organization_id.is_(None) & or_(*by_domain))
        query = select(User.id).where(User.type == UserType.GUEST.value, member)
        return list(self.session.scalars(query.order_by(User.id)))


def organization_view(org: ConnectedOrganization) -> dict[str, Any]:
    """What audit records show of an organisation."""
    return {f: getattr(org, f) for f in FIELDS}


def _taken(domain: str, owner: str | None) -> ConflictError:
    return ConflictError(f"domain {domain!r} belongs to organization {owner!r}", field="domains")


def _settable_state(value: str) -> OrganizationState:
    """The state a PUT (or an import) may set: proposed or configured."""
    if value not in (OrganizationState.PROPOSED, OrganizationState.CONFIGURED):
        raise InvalidError(
            "state is proposed or configured (an organisation is removed by deleting it)",
            field="state",
        )
    return OrganizationState(value)


def _check_values(domains: list[str], sponsors: dict[str, list[str]]) -> None:
    for domain in domains:
        if len(domain) > MAX_DOMAIN:
            raise InvalidError(f"a domain has at most {MAX_DOMAIN} characters", field="domains")
    for field, ids in sponsors.items():
        for sponsor in ids:
            check_id(sponsor, field)
