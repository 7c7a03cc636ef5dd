"""`policyd replay`: which past decisions a candidate version would decide differently."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from policyd.cli.base import _load, _session, database_option, main
from policyd.rules import Policy, ProblemsError, load_texts
from policyd.rules.timing import parse_duration
from policyd.services.errors import NotFoundError
from policyd.services.replay import ReplayReport, ReplayService
from policyd.services.versions import VersionService

_SHORT = re.compile(r"(\d+)([dhm])\Z")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class Since(click.ParamType):
    """How far back: `30d`, `12h`, an ISO-8601 duration (P30D) or a time (2026-10-01T00:00Z);
    a time without an offset is UTC."""

    name = "since"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        short = _SHORT.match(text)
        try:
            if short:
                delta = timedelta(**{_UNITS[short.group(2)]: int(short.group(1))})
                return datetime.now(UTC) - delta
            if text.startswith("P"):
                return datetime.now(UTC) - parse_duration(text)
            moment = datetime.fromisoformat(text)
        except (ValueError, OverflowError) as err:
            self.fail(f"{text!r}: {err}; give 30d, P30D or 2026-10-01T00:00:00Z", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@main.command()
@click.option(
    "--candidate",
    required=True,
    help="The rules to try: a policies folder, or the id of a published version.",
)
@click.option("--since", type=Since(), help="Only decisions since then: 30d, P30D or a time.")
@click.option("--package", help="Only decisions on this package.")
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="Changed decisions listed (all are counted).",
)
@click.option("--exit-code", is_flag=True, help="Exit 1 when any decision would change.")
@database_option
def replay(
    candidate: str,
    since: datetime | None,
    package: str | None,
    output: str,
    limit: int,
    exit_code: bool,
    database_url: str,
) -> None:
    """Decide the logged decisions again under CANDIDATE and list those that would change
    (from -> to, deciding rule before and after), with counts per package. Writes nothing."""
    with _session(database_url) as session:
        bundle = _candidate(session, candidate)
        policy = Policy(bundle)
        report = ReplayReport(candidate=f"{candidate} (version {bundle.version.id})")
        service = ReplayService(session)
        changes = []  # those listed
        try:
            total = service.count(since=since, package=package)
            shown = sys.stderr.isatty() and output == "text"
            with click.progressbar(
                length=total, label="replaying", file=sys.stderr if shown else _Silent()
            ) as bar:
                for change in service.replay(
                    policy, report, since=since, package=package, progress=bar.update
                ):
                    if len(changes) < limit:
                        changes.append(change)
                        if output == "text":
                            click.echo(_line(change))
        finally:
            policy.close()
    if output == "json":
        click.echo(json.dumps(report.to_dict() | {"changes": [c.to_dict() for c in changes]}))
    else:
        _summary(report, len(changes))
    if exit_code and report.changed:
        sys.exit(1)


def _candidate(session, candidate: str):
    if Path(candidate).is_dir():
        return _load(Path(candidate))
    try:
        files = VersionService(session).get(candidate).files
    except NotFoundError:
        raise click.BadParameter(
            f"{candidate!r} is neither a folder nor a published version id",
            param_hint="--candidate",
        ) from None
    try:
        return load_texts(files, display_root=f"version {candidate}")
    except ProblemsError as err:  # a version published by an older policyd
        raise click.ClickException(str(err)) from None


def _line(change) -> str:
    before = f"{change.before[0]} ({change.before[1] or 'no rule'})"
    after = f"{change.after[0]} ({change.after[1] or 'no rule'})"
    return (
        f"{change.at.isoformat(timespec='seconds')}  {change.subject_id}  {change.package}  "
        f"{before} -> {after}  [decision {change.decision_id}, version {change.version}]"
    )


def _summary(report: ReplayReport, listed: int) -> None:
    noun = "decision" if report.examined == 1 else "decisions"
    click.echo(
        f"examined {report.examined:,} {noun} under {report.candidate}: "
        f"{report.changed:,} would change"
        + (f" ({listed:,} listed)" if listed < report.changed else "")
    )
    for (package, before, after), count in sorted(report.transitions.items()):
        click.echo(f"  {package}  {before} -> {after}  {count:,}")


class _Silent:
    """A stream for the progress bar when nothing should be drawn."""

    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
