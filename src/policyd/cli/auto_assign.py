"""`policyd auto-assign preview`: what a version's autoAssign rules would add and remove."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from policyd.cli.base import _session, database_option, main
from policyd.cli.replay import _candidate
from policyd.rules import PolicyRuntime
from policyd.services.auto_assign_preview import preview
from policyd.services.versions import VersionService


@main.group("auto-assign")
def auto_assign_group() -> None:
    """Auto-assignment (docs/rules.md, "Auto-assignment")."""


@auto_assign_group.command("preview")
@click.option(
    "--version",
    "candidate",
    default=None,
    help="A published version id or a policies folder (default: the active version).",
)
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything would be added or removed.")
@database_option
def auto_assign_preview(
    candidate: str | None, output: str, exit_code: bool, database_url: str
) -> None:
    """Count, per package, whom the autoAssign rules would assign and unassign if applied
    now (removals after their grace period), over every active user. Writes nothing."""
    with _session(database_url) as session:
        if candidate is None:
            active = VersionService(session).active_id()
            if active is None:
                raise click.ClickException("no policy version is active; give --version")
            candidate = active
        bundle = _candidate(session, candidate)
        report = preview(session, PolicyRuntime(), bundle, now=datetime.now(UTC)).to_dict()
    if output == "json":
        click.echo(json.dumps(report))
    else:
        click.echo(f"version {report['version']}: {report['users']} active users evaluated")
        click.echo(f"{'package':40} {'add':>7} {'remove':>7} {'same':>7} {'held':>7}  grace")
        for row in report["packages"]:
            click.echo(
                f"{row['package']:40} {row['would_add']:>7} {row['would_remove']:>7} "
                f"{row['unchanged']:>7} {row['held_otherwise']:>7}  {row['grace'] or '-'}"
            )
        click.echo(f"would add {report['would_add']}, would remove {report['would_remove']}")
    if exit_code and (report["would_add"] or report["would_remove"]):
        sys.exit(1)
