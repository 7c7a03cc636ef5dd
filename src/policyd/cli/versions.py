"""`policyd versions list/show/activate`: the published versions, from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from policyd.cli.base import _admin, _pages, _session, actor_option, database_option, main
from policyd.services.versions import VersionService


@main.group("versions")
def versions_group() -> None:
    """List, show and activate (roll back to) published policy versions."""


def _git(version) -> str:
    if not version.git_commit:
        return "-"
    state = {True: " (uncommitted changes)", False: "", None: " (working tree not recorded)"}
    return version.git_commit[:12] + state[version.git_dirty]


def _record(version, active: str | None, files: bool = False) -> dict:
    data = {
        "id": version.id,
        "active": version.id == active,
        "content_hash": version.content_hash,
        "created_at": version.created_at.isoformat(timespec="seconds"),
        "author": version.author,
        "message": version.message,
        "git_commit": version.git_commit,
        "git_dirty": version.git_dirty,
        "packages": list(version.packages),
    }
    if files:
        data["files"] = dict(version.files)
    return data


@versions_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, newest first.")
@database_option
def versions_list(as_json: bool, database_url: str) -> None:
    """Published versions, newest first; * marks the active one."""
    with _session(database_url) as session:
        service = VersionService(session)
        active = service.active_id()
        versions = list(_pages(service.list))
        records = [_record(v, active) for v in versions]
        gits = [_git(v) for v in versions]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo("no published versions: `policyd publish -m MESSAGE`")
        return
    rows = [("", "ID", "CREATED", "AUTHOR", "GIT", "PACKAGES", "MESSAGE")]
    rows += [
        (
            "*" if r["active"] else "",
            r["id"],
            r["created_at"],
            r["author"],
            git,
            str(len(r["packages"])),
            r["message"].splitlines()[0] if r["message"] else "",
        )
        for r, git in zip(records, gits, strict=True)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@versions_group.command("show")
@click.argument("version_id")
@click.option("--json", "as_json", is_flag=True, help="As JSON, with the text of every file.")
@database_option
def versions_show(version_id: str, as_json: bool, database_url: str) -> None:
    """One version: where it came from, its packages and its files."""
    with _session(database_url) as session:
        service = VersionService(session)
        version = service.get(version_id)
        record = _record(version, service.active_id(), files=True)
        git = _git(version)
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    lines = [
        f"version   {record['id']}{'  (active)' if record['active'] else ''}",
        f"hash      sha256:{record['content_hash']}",
        f"created   {record['created_at']}",
        f"author    {record['author']}",
        f"message   {record['message'] or '-'}",
        f"git       {git}",
        f"packages  {', '.join(record['packages'])}",
    ]
    for index, (name, text) in enumerate(sorted(record["files"].items())):
        count = len(text.splitlines())
        lines.append(f"{'files' if index == 0 else '':<10}{name} ({count} lines)")
    click.echo("\n".join(lines))


@versions_group.command("activate")
@click.argument("version_id")
@database_option
@actor_option
def versions_activate(version_id: str, database_url: str, actor: str) -> None:
    """Make VERSION_ID the active version (roll back or forward); audited. Every process
    switches within its sync interval."""
    with _session(database_url) as session:
        service = VersionService(session)
        before = service.active_id()
        version = service.activate(_admin(actor), version_id, now=datetime.now(UTC))
        version_id = version.id
    if before == version_id:
        click.echo(f"version {version_id} is already active; nothing changed")
    else:
        click.echo(f"version {version_id} is now active (before: {before or 'none'})")
