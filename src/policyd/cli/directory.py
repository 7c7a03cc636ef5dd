"""`policyd directory import`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from policyd.cli.base import _admin, _fail, _session, actor_option, database_option, main
from policyd.rules import ProblemsError
from policyd.rules.source import Problem
from policyd.services.directory_import import (
    import_directory,
    parse_csv_directory,
    parse_json_directory,
)


@main.group("directory")
def directory_group() -> None:
    """Load users, groups and connected organisations into the directory."""


@directory_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["json", "csv"]),
    help="File format [default: from the file suffix].",
)
@database_option
@actor_option
def directory_import(file: Path, file_format: str | None, database_url: str, actor: str) -> None:
    """Check all of FILE, then create or update everything in it in one transaction.

    Nothing is deleted: users, groups and organisations missing from FILE stay, and group
    memberships are only added. See docs/directory-import.md for both formats.
    """
    file_format = file_format or _format_of(file)
    shown = str(file)
    try:
        content = file.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        _fail([Problem(shown, 0, f"cannot read: {err}")])
    parse = parse_csv_directory if file_format == "csv" else parse_json_directory
    with _session(database_url) as session:
        try:
            parsed = parse(content, shown)
            counts = import_directory(parsed, session, _admin(actor), now=datetime.now(UTC))
        except ProblemsError as err:
            _fail(err.problems)
    click.echo(f"imported {shown}")
    for kind, count in counts.items():
        done = "added" if kind == "memberships" else "created"
        changes = [f"{count[done]} {done}"]
        if kind != "memberships":
            changes.append(f"{count['updated']} updated")
        changes.append(f"{count['unchanged']} unchanged")
        changes += [f"{count[left]} {left}" for left in ("disabled", "enabled") if count[left]]
        click.echo(f"  {kind:<14}{', '.join(changes)}")


def _format_of(file: Path) -> str:
    suffix = file.suffix.lower().lstrip(".")
    if suffix not in ("json", "csv"):
        raise click.UsageError(f"cannot tell the format of {file.name}; give --format json or csv")
    return suffix
