"""Commands for the decision log's spool on this host: drain (a sidecar, or once) and status."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from policyd import compose
from policyd.cli.base import (
    _reason,
    _require_existing,
    _session,
    database_option,
    main,
    settings_for,
)
from policyd.services.decision_log import Drainer, drop_expired_entries
from policyd.settings import Settings

spool_option = click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The spool folder the servers on this host write to [env: POLICYD_SPOOL_DIR; default:"
    " beside the SQLite file, or a folder per database in the temp directory].",
)
interval_option = click.option(
    "--decision-log-interval",
    help="Seconds between passes over the spool [env: POLICYD_DECISION_LOG_INTERVAL; "
    "default: 0.1].",
)


@contextmanager
def open_drainer(settings: Settings) -> Iterator[Drainer]:
    """A drainer of the settings' spool folder into their database.

    Raises:
        click.ClickException: a SQLite database file that does not exist (none is created).
    """
    _require_existing(settings.database)
    with compose.open_drainer(settings) as drainer:
        yield drainer


def _check(drainer: Drainer) -> None:
    try:
        drainer.storer.check()
    except (OperationalError, ProgrammingError) as err:
        raise click.ClickException(
            f"the database is not ready ({_reason(err)}); run `policyd db upgrade` first"
        ) from None


@main.group("decision-log")
def decision_log_group() -> None:
    """The decision log: its spool on this host, and its retention."""


@decision_log_group.command("drain")
@click.option("--once", is_flag=True, help="Store what is spooled now, then exit.")
@interval_option
@spool_option
@database_option
def drain(
    once: bool, decision_log_interval: str | None, spool_dir: Path | None, database_url: str
) -> None:
    """Store the decision-log entries this host's servers spool, each exactly once.

    Runs until SIGTERM or Ctrl-C (a sidecar or a systemd unit at idle CPU priority, see
    docs/storage.md); several drainers may share a folder.
    """
    settings = settings_for(
        database_url=database_url,
        spool_dir=spool_dir,
        decision_log_interval=decision_log_interval,
    )
    settings.configure_logging()
    with open_drainer(settings) as drainer:
        _check(drainer)
        if once:
            try:
                stored = drainer.drain()
            except OperationalError as err:
                reason = _reason(err)
                raise click.ClickException(f"the database is unavailable ({reason})") from None
            click.echo(f"stored {stored} entries from {drainer.folder}")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        interval = settings.decision_log_interval
        click.echo(f"draining {drainer.folder} every {interval:g} s; Ctrl-C stops")
        try:
            drainer.run(stop, interval)
        except KeyboardInterrupt:
            stop.set()


@decision_log_group.command("status")
@click.option(
    "--max-age",
    type=click.FloatRange(min=0),
    help="Exit 1 if the oldest unstored entry is older than this many seconds.",
)
@spool_option
@database_option
def status(max_age: float | None, spool_dir: Path | None, database_url: str) -> None:
    """How far the decision log is behind what this host's servers spooled."""
    settings = settings_for(database_url=database_url, spool_dir=spool_dir)
    with open_drainer(settings) as drainer:
        _check(drainer)
        lag = drainer.lag()
    age = lag.seconds(datetime.now(UTC))
    about = "about " if lag.estimated else ""
    click.echo(f"spool folder {drainer.folder}: {lag.files} file(s)")
    click.echo(f"not stored: {about}{lag.entries} entries, {lag.bytes} bytes")
    click.echo(f"oldest unstored entry: {f'{age:.1f} s old' if lag.oldest_at else 'none'}")
    if max_age is not None and age > max_age:
        raise SystemExit(1)


@decision_log_group.command("prune")
@click.option(
    "--days",
    type=click.IntRange(min=0, max=10**6),
    help="Delete entries older than this many days; 0 keeps every entry "
    "[env: POLICYD_DECISION_LOG_RETENTION; default: 0].",
)
@database_option
def prune(days: int | None, database_url: str) -> None:
    """Delete decision-log entries past the retention (on PostgreSQL whole months by
    dropping their partition, the rest in batches) without holding the drainers' inserts up;
    entries a request or assignment refers to stay (docs/storage.md)."""
    settings = settings_for(database_url=database_url, decision_log_retention=days)
    keep = settings.decision_log_retention
    if keep == 0:
        click.echo("retention is 0 (keep every entry): nothing to delete")
        return
    with _session(settings.database) as session:
        deleted = drop_expired_entries(session, datetime.now(UTC), keep)
    click.echo(f"deleted {deleted} decision-log entries older than {keep} days")
