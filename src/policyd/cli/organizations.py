"""`policyd organization ...`: connected organisations, the proposed ones configured, removal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from policyd.cli.base import _admin, _pages, _session, actor_option, database_option, main
from policyd.services.directory import DirectoryService
from policyd.services.directory.admin import DirectoryAdmin
from policyd.services.organization_removal import OrganizationRemoval

STATES = click.Choice(["proposed", "configured"])


@main.group("organization")
def organization_group() -> None:
    """Connected organisations (docs/organizations.md)."""


def _shown(org: Any) -> str:
    """One line of an organisation (a row of the directory's)."""

    def names(ids: list[str]) -> str:
        return ", ".join(ids) or "-"

    return (
        f"{org.id}  {org.state:10}  {org.display_name}  domains: {names(org.domains)}  "
        f"internal sponsors: {names(org.internal_sponsors)}  "
        f"external sponsors: {names(org.external_sponsors)}"
    )


@organization_group.command("list")
@click.option("--state", type=STATES, default=None, help="Only organisations in this state.")
@database_option
def organization_list(state: str | None, database_url: str) -> None:
    """Connected organisations by id: state, name, domains, sponsors."""
    with _session(database_url) as session:
        directory = DirectoryService(session)
        for org in _pages(lambda **page: directory.list_organizations(state=state, **page)):
            click.echo(_shown(org))


@organization_group.command("configure")
@click.argument("org_id")
@click.option("--display-name", default=None, help="The name shown (kept if not given).")
@click.option("--domain", "domains", multiple=True, help="Its domains, replacing them (repeat).")
@click.option("--internal-sponsor", "internal", multiple=True, help="A member who sponsors.")
@click.option("--external-sponsor", "external", multiple=True, help="A guest who sponsors.")
@click.option("--state", type=STATES, default="configured", show_default=True)
@database_option
@actor_option
def organization_configure(
    org_id: str,
    display_name: str | None,
    domains: tuple[str, ...],
    internal: tuple[str, ...],
    external: tuple[str, ...],
    state: str,
    database_url: str,
    actor: str,
) -> None:
    """Configure an organisation (a proposed one, typically): what is given is set, the rest
    kept, as PUT /v1/organizations/ORG_ID does."""
    data: dict[str, Any] = {"state": state}
    given = {
        "display_name": display_name,
        "domains": list(domains) or None,
        "internal_sponsors": list(internal) or None,
        "external_sponsors": list(external) or None,
    }
    data.update({key: value for key, value in given.items() if value is not None})
    with _session(database_url) as session:
        org = DirectoryAdmin(session).put_organization(
            _admin(actor), org_id, data, now=datetime.now(UTC), keep_missing=True
        )
        click.echo(_shown(org))


@organization_group.command("remove")
@click.argument("org_id")
@database_option
@actor_option
def organization_remove(org_id: str, database_url: str, actor: str) -> None:
    """Remove an organisation: its guests' access is removed through the connectors (by the
    worker, from the outbox) and their open requests canceled."""
    with _session(database_url) as session:
        removal = OrganizationRemoval(session)
        ended = removal.remove_organization(_admin(actor), org_id, now=datetime.now(UTC))
    click.echo(
        f"removed {org_id}: {ended['guests']} guest(s), {ended['assignments_ended']} "
        f"assignment(s) ended, {ended['requests_canceled']} request(s) canceled"
    )
