"""`policyd review ...`: access-review campaigns, items, decisions and the CSV export."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from policyd.cli.base import _admin, _pages, _session, actor_option, database_option, main
from policyd.cli.compliance import TIME
from policyd.rules import PolicyRuntime
from policyd.services.reviews import ItemState, ReviewService
from policyd.services.versions import VersionService


def _service(session) -> ReviewService:
    # Listing, deciding and exporting need no rules; the worker opens and closes campaigns.
    return ReviewService(session, PolicyRuntime())


@main.group("review")
def review_group() -> None:
    """Access reviews (docs/reviews.md)."""


@review_group.command("campaigns")
@click.option("--package", default=None, help="Only this package's campaigns.")
@click.option("--state", type=click.Choice(["open", "closed"]), default=None)
@database_option
def review_campaigns(package: str | None, state: str | None, database_url: str) -> None:
    """Campaigns, newest first: id, package/review, state, period."""
    with _session(database_url) as session:
        service = _service(session)
        listed = _pages(
            lambda **page: service.campaigns(_admin("cli"), package=package, state=state, **page)
        )
        for campaign in listed:
            click.echo(
                f"{campaign.id}  {campaign.package}/{campaign.review}  {campaign.state:6}  "
                f"{campaign.starts_at:%Y-%m-%d} to {campaign.ends_at:%Y-%m-%d}  "
                f"on no response: {campaign.on_no_response}"
            )


@review_group.command("list")
@click.option("--reviewer", default=None, help="Only items this user reviews.")
@click.option("--campaign", default=None, help="Only this campaign's items.")
@click.option(
    "--state",
    type=click.Choice([str(s) for s in ItemState]),
    default=str(ItemState.PENDING),
    show_default=True,
)
@database_option
def review_list(reviewer: str | None, campaign: str | None, state: str, database_url: str) -> None:
    """Review items: id, holder, package, recommendation, decision, result."""
    with _session(database_url) as session:
        service = _service(session)
        listed = _pages(
            lambda **page: service.items(
                _admin("cli"), reviewer=reviewer, campaign=campaign, state=state, **page
            )
        )
        for item in listed:
            click.echo(
                f"{item.id}  {item.subject_id}  {item.package}  "
                f"recommendation: {item.recommendation or '-'}  "
                f"decision: {item.decision or '-'}  result: {item.result or '-'}"
            )


@review_group.command("decide")
@click.argument("item_id")
@click.argument("decision", type=click.Choice(["keep", "remove"]))
@click.option("--justification", "-j", required=True, help="Why (recorded and exported).")
@database_option
@actor_option
def review_decide(
    item_id: str, decision: str, justification: str, database_url: str, actor: str
) -> None:
    """Keep or remove one item's access (as an admin), with a justification."""
    with _session(database_url) as session:
        item = _service(session).decide(
            _admin(actor), item_id, decision, justification, now=datetime.now(UTC)
        )
        click.echo(f"{item.id}: {item.decision} ({item.subject_id}, {item.package})")


@review_group.command("export")
@click.argument("campaign_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the CSV here instead of to standard output.",
)
@database_option
def review_export(campaign_id: str, output: Path | None, database_url: str) -> None:
    """Every item of a campaign as CSV, for auditors."""
    with _session(database_url) as session:
        text = _service(session).export_csv(_admin("cli"), campaign_id)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {text.count(chr(10)) - 1} item(s) to {output}", err=True)


@review_group.command("sweep")
@click.option(
    "--at",
    "moment",
    type=TIME,
    default=None,
    help="The time to act at (default: now); an ISO-8601 time with an offset, or a date.",
)
@database_option
def review_sweep(moment: datetime | None, database_url: str) -> None:
    """Open due campaigns, send due reminders and close ended campaigns under the active
    policy version, as the worker does; removals go to the outbox for the worker to run."""
    now = moment or datetime.now(UTC)
    with _session(database_url) as session:
        versions = VersionService(session)
        active = versions.active_id()
        if active is None:
            raise click.ClickException("no policy version is active: publish one first")
        runtime = PolicyRuntime(versions.bundle(active))
        try:
            service = ReviewService(session, runtime)
            opened = service.open_due(now=now)
            reminded = service.remind_due(now=now)
            closed = service.close_due(now=now)
        finally:
            runtime.close()
    click.echo(
        f"opened {opened} campaign(s), queued {reminded} reminder(s), closed {closed} "
        f"campaign(s) at {now.isoformat()}"
    )
