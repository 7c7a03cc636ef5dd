"""Delegated administration: which packages a catalog owner or package manager may administer."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from policyd.rules import Bundle, PolicyRuntime
from policyd.rules.model import Catalog
from policyd.services.actor import Actor, Role
from policyd.services.errors import ForbiddenError, InvalidError
from policyd.store.models import AccessRequest, Membership

DELEGATES = (Role.USER,)  # people; apps and auditors have their own reach


@dataclass(frozen=True)
class Scope:
    """The packages an actor administers: every one (`everything`), or those in `packages`,
    each with why (catalog ownership or package management)."""

    everything: bool = False
    packages: dict[str, str] | None = None

    def covers(self, package: str) -> bool:
        return self.everything or package in (self.packages or {})

    @property
    def package_ids(self) -> list[str]:
        return sorted(self.packages or {})


NOTHING = Scope(packages={})
EVERYTHING = Scope(everything=True)


class DelegationService:
    """Decides "may actor X administer package P" from the active version's catalogs and
    package managers, with groups resolved through the directory."""

    def __init__(self, session: Session, runtime: PolicyRuntime):
        self.session = session
        self.runtime = runtime

    def _bundle(self) -> Bundle | None:
        active = self.runtime.active
        return active.bundle if active is not None else None

    def principals(self, actor: Actor) -> set[str]:
        """The actor as rule files name people: `user:<id>` and `group:<id>` of each group."""
        groups = self.session.scalars(
            select(Membership.group_id).where(Membership.user_id == actor.principal)
        )
        return {f"user:{actor.principal}", *(f"group:{group}" for group in groups)}

    def scope(self, actor: Actor) -> Scope:
        """What `actor` administers: admins everything; people their catalogs' packages and
        the packages they manage; anyone else nothing."""
        if actor.role is Role.ADMIN:
            return EVERYTHING
        bundle = self._bundle()
        if actor.role not in DELEGATES or bundle is None:
            return NOTHING
        me = self.principals(actor)
        # From the bundle's indexes, so a packed bundle decodes none of its packages here.
        packages: dict[str, str] = {}
        for catalog in bundle.catalogs.values():
            if me & set(catalog.owners):
                for package_id in catalog.packages:
                    packages[package_id] = f"owner of catalog {catalog.id!r}"
        for package_id, managers in bundle.managed.items():
            if package_id not in packages and me & set(managers):
                packages[package_id] = f"manager of package {package_id!r}"
        return Scope(packages=packages)

    def catalogs(
        self, actor: Actor, *, offset: int = 0, limit: int = 100
    ) -> tuple[list[Catalog], int]:
        """A page of the active version's catalogs, by id, and how many: a person sees the
        ones they own; every other role all of them."""
        bundle = self._bundle()
        found = sorted(bundle.catalogs.values(), key=lambda c: c.id) if bundle else []
        if actor.role in DELEGATES:
            me = self.principals(actor)
            found = [catalog for catalog in found if me & set(catalog.owners)]
        return found[offset : offset + limit], len(found)

    def require_package(self, actor: Actor, package: str, *, field: str = "package") -> None:
        """Refuse, naming why, an actor who does not administer `package`.

        Raises:
            ForbiddenError: neither an admin, nor an owner of its catalog, nor its manager.
        """
        if self.scope(actor).covers(package):
            return
        bundle = self._bundle()
        known = bundle.packages.get(package) if bundle is not None else None
        catalog = (
            f" nor an owner of its catalog {known.catalog!r}" if known and known.catalog else ""
        )
        raise ForbiddenError(
            f"{actor.principal!r} is not a manager of package {package!r}{catalog}", field=field
        )

    def catalog_packages(self, actor: Actor, catalog: str, *, narrowing: bool = False) -> list[str]:
        """The packages of `catalog`, for an actor who may see all of them (anyone, with
        `narrowing`: a filter on what they see already, like a request list).

        Raises:
            InvalidError: no catalog `catalog` in the active version.
            ForbiddenError: a person who does not own it. (Other roles may filter by any
                catalog: it only narrows what they see already.)
        """
        bundle = self._bundle()
        if bundle is None or catalog not in bundle.catalogs:
            raise InvalidError(f"no catalog {catalog!r} in the active version", field="catalog")
        packages = list(bundle.catalogs[catalog].packages)
        if narrowing or actor.role not in DELEGATES:
            return packages
        owners = set(bundle.catalogs[catalog].owners)
        if actor.role in DELEGATES and self.principals(actor) & owners:
            return packages
        raise ForbiddenError(
            f"{actor.principal!r} does not own catalog {catalog!r}", field="catalog"
        )

    def requests_seen_by(self, actor: Actor) -> ColumnElement[bool]:
        """The requests a person or an app sees in lists: those filed by them or for them,
        and those for the packages they administer."""
        return or_(
            AccessRequest.subject_id == actor.principal,
            AccessRequest.principal == actor.principal,
            AccessRequest.package.in_(self.scope(actor).package_ids),
        )
