"""Governance commands: the separation-of-duties report."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys

import click

from policyd.cli.base import _session, database_option, main
from policyd.services.actor import Actor, Role
from policyd.services.sod import SodService, Violation

COLUMNS = [field.name for field in dataclasses.fields(Violation)]


@main.command("sod-report")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table for people, csv or json for tools.",
)
@click.option("--subject", help="Only this person's conflicts.")
@click.option("--package", help="Only conflicts this package is part of (on either side).")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anyone holds incompatible access.")
@database_option
def sod_report(
    output: str, subject: str | None, package: str | None, exit_code: bool, database_url: str
) -> None:
    """List people who hold incompatible access now, under the active policy version.

    One row per conflict: two live assignments of incompatible packages, or a live
    assignment and membership of a group incompatible with its package.
    """
    with _session(database_url) as session:
        service = SodService(session)
        actor = Actor("cli", Role.AUDITOR)
        found = list(service.all_violations(actor, subject=subject, package=package))
    if output == "json":
        click.echo(json.dumps([v.to_dict() for v in found], indent=2))
    elif output == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(v.to_dict() for v in found)
    else:
        _table(found)
    if exit_code and found:
        sys.exit(1)


def _table(found: list[Violation]) -> None:
    rows = [("subject", "package", "assignment", "conflicts with", "its assignment")]
    for v in found:
        other = v.conflicts_with if v.kind == "package" else f"group {v.conflicts_with}"
        rows.append((v.subject_id, v.package, v.assignment_id, other, v.other_assignment_id or "-"))
    if found:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            click.echo(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
    people = len({v.subject_id for v in found})
    version = f" under version {found[0].version}" if found else ""
    click.echo(
        f"{len(found)} conflict{'s' if len(found) != 1 else ''}, {people} "
        f"{'person' if people == 1 else 'people'}{version}"
    )
