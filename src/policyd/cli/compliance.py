"""Compliance commands: `policyd audit verify/export` and `policyd access-report`."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import IO, Any

import click

from policyd.cli.base import _admin, _os_user, _session, database_option, main
from policyd.services.access_report import AccessReportService, Holding, check_target, window
from policyd.services.audit import COLUMNS, AuditService, canonical_time, parse_anchor
from policyd.services.errors import InvalidError

SHOWN_PROBLEMS = 100


class Time(click.ParamType):
    """An ISO-8601 time with an offset (2026-07-01T00:00:00Z), or a date (midnight UTC)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            if len(text) == 10:
                return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time or date", param, ctx)
        if parsed.tzinfo is None:
            self.fail(f"{value!r} has no offset; add Z for UTC or +hh:mm", param, ctx)
        return parsed.astimezone(UTC)


TIME = Time()


@main.group("audit")
def audit_group() -> None:
    """Check and export the hash-chained audit trail (docs/audit.md)."""


@audit_group.command("verify")
@click.option(
    "--from-anchor",
    "anchor",
    default=None,
    help="HASH@ID kept from an earlier verify or export: start there, and fail unless that "
    "record still has that hash.",
)
@database_option
def audit_verify(anchor: str | None, database_url: str) -> None:
    """Walk the audit chain and name every record that does not fit it; exit 1 if any."""
    try:
        start = parse_anchor(anchor) if anchor else None
    except InvalidError as err:
        raise click.BadParameter(err.message, param_hint="--from-anchor") from None
    with _session(database_url) as session:
        report = AuditService(session).verify(anchor=start)
    for record_id, problem in report.problems:
        click.echo(f"audit record {record_id}: {problem}", err=True)
    if report.broken > len(report.problems):
        click.echo(f"... and {report.broken - len(report.problems)} more", err=True)
    walked = f"{report.records} records" + (
        f" (ids {report.first_id} to {report.last_id})" if report.records else ""
    )
    if not report.intact:
        click.echo(f"chain broken: {report.broken} problems in {walked}", err=True)
        sys.exit(1)
    click.echo(f"chain intact: {walked}")
    if report.anchor:
        click.echo(f"anchor {report.anchor}")


@audit_group.command("export")
@click.option("--since", type=TIME, default=None, help="Only records at or after this time.")
@click.option(
    "--after-id", type=click.IntRange(min=0), default=0, help="Only records after this id."
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
)
@click.option(
    "--output",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="File to write [default: standard output].",
)
@database_option
def audit_export(
    since: datetime | None, after_id: int, file_format: str, output: IO[str], database_url: str
) -> None:
    """Stream the audit records in id order with their hashes, one per line.

    Keep the last line's `hash` and `id` elsewhere: `policyd audit verify --from-anchor
    HASH@ID` proves later that nothing up to it was changed.
    """
    with _session(database_url) as session:
        rows = AuditService(session).rows(since=since, after_id=after_id)
        if file_format == "jsonl":
            for row in rows:
                output.write(json.dumps(_exported(row), ensure_ascii=False) + "\n")
        else:
            writer = csv.writer(output, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in rows:
                values = _exported(row)
                for name in ("before", "after"):
                    if values[name] is not None:
                        values[name] = json.dumps(values[name], sort_keys=True)
                writer.writerow(values[name] for name in COLUMNS)


def _exported(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": canonical_time(row["at"])}


CSV_COLUMNS = (
    "subject",
    "package",
    "assignment",
    "state",
    "held_from",
    "held_until",
    "expires_at",
    "request",
    "decision",
    "rule",
    "version",
    "approved_by",
    "terms_from",
    "terms_until",
)


@main.command("access-report")
@click.option("--package", default=None, help="Who held this access package.")
@click.option("--resource", default=None, help="Who held this resource (e.g. group:Finance).")
@click.option("--subject", default=None, help="What this person held.")
@click.option("--at", type=TIME, default=None, help="At this moment.")
@click.option("--from", "start", type=TIME, default=None, help="At any time from this...")
@click.option("--to", "end", type=TIME, default=None, help="...until this (exclusive).")
@click.option(
    "--format", "file_format", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--output",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="File to write [default: standard output].",
)
@database_option
def access_report(
    package: str | None,
    resource: str | None,
    subject: str | None,
    at: datetime | None,
    start: datetime | None,
    end: datetime | None,
    file_format: str,
    output: IO[str],
    database_url: str,
) -> None:
    """Who held access at a moment or during a period, through which assignment and request,
    approved by whom, under which rule and version (docs/audit.md#who-had-access)."""
    try:
        check_target(package, resource, subject)
        when = window(at, start, end)
    except InvalidError as err:
        option = {"from": "--from", "to": "--to"}.get(err.field or "", f"--{err.field}")
        raise click.BadParameter(err.message, param_hint=option) from None
    with _session(database_url) as session:
        holdings = AccessReportService(session).stream(
            _admin(_os_user()), when, package=package, resource=resource, subject=subject
        )
        if file_format == "json":
            _write_json(output, holdings)
        else:
            writer = csv.writer(output, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for holding in holdings:
                writer.writerows(_csv_rows(holding))


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def holding_dict(holding: Holding) -> dict[str, Any]:
    return {
        "assignment_id": holding.assignment_id,
        "subject_id": holding.subject_id,
        "package": holding.package,
        "state": holding.state,
        "held_from": _time(holding.held_from),
        "held_until": _time(holding.held_until),
        "expires_at": _time(holding.expires_at),
        "terms": [
            {
                "request_id": terms.request_id,
                "decision_id": terms.decision_id,
                "rule": terms.rule,
                "version": terms.version,
                "approved_by": [
                    {**approval, "at": _time(approval["at"])} for approval in terms.approved_by
                ],
                "granted_at": _time(terms.granted_at),
                "until": _time(terms.until),
            }
            for terms in holding.terms
        ],
    }


def _write_json(out: IO[str], holdings: Iterator[Holding]) -> None:
    """A JSON array, written item by item (the report may be long)."""
    out.write("[")
    for number, holding in enumerate(holdings):
        out.write(("," if number else "") + "\n  " + json.dumps(holding_dict(holding)))
    out.write("\n]\n")


def _csv_rows(holding: Holding) -> Iterator[list[Any]]:
    """One line per terms the holding stood on in the window."""
    item = holding_dict(holding)
    for terms in item["terms"]:
        yield [
            item["subject_id"],
            item["package"],
            item["assignment_id"],
            item["state"],
            item["held_from"],
            item["held_until"] or "",
            item["expires_at"] or "",
            terms["request_id"],
            terms["decision_id"],
            terms["rule"] or "",
            terms["version"],
            ";".join(approval["approver"] for approval in terms["approved_by"]),
            terms["granted_at"],
            terms["until"] or "",
        ]
