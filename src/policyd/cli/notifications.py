"""`policyd notifications`: check the notification templates, and show what one renders."""

from __future__ import annotations

from pathlib import Path

import click

from policyd import compose
from policyd.cli.base import _fail, main, settings_for
from policyd.rules import ProblemsError
from policyd.services.messages import events, preview

templates_option = click.option(
    "--templates",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of templates over the shipped ones [env: POLICYD_NOTIFICATION_TEMPLATES].",
)


@main.group("notifications")
def notifications_group() -> None:
    """Notification templates (docs/notifications.md)."""


@notifications_group.command("check")
@templates_option
def notifications_check(folder: Path | None) -> None:
    """Load every template and render it with its event's sample values; print the
    problems as file:line and exit 1 if any."""
    settings = settings_for(notification_templates=folder)
    try:
        templates = compose.load_templates(settings)
    except ProblemsError as err:
        _fail(err.problems)
    for event in events():
        tags = ", ".join(
            tag or settings.notification_language for tag in templates.languages(event)
        )
        click.echo(f"ok   {event} ({tags})")


@notifications_group.command("render")
@click.argument("event", type=click.Choice(sorted(events())))
@click.option("--language", help="The recipient's language (default: the default one).")
@click.option("--html", is_flag=True, help="Show the HTML part instead of the text.")
@templates_option
def notifications_render(event: str, language: str | None, html: bool, folder: Path | None):
    """Show what EVENT's template makes of its sample values: subject, blank line, body."""
    settings = settings_for(notification_templates=folder)
    try:
        templates = compose.load_templates(settings)
    except ProblemsError as err:
        _fail(err.problems)
    rendered = preview(templates, event, language)
    if html:
        click.echo(rendered.html if rendered.html is not None else "(no HTML part)")
    else:
        click.echo(f"{rendered.subject}\n\n{rendered.text}", nl=False)
