"""Commands for the lifecycle: worker, expire, jobs, connectors."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from policyd import compose
from policyd.cli.base import (
    _admin,
    _fail,
    _pages,
    _require_existing,
    _session,
    actor_option,
    database_option,
    main,
    settings_for,
)
from policyd.cli.decision_log import interval_option, spool_option
from policyd.domain import JobState
from policyd.periodic import SWEEP, WORKER
from policyd.rules import ProblemsError
from policyd.services.jobs import JobService
from policyd.settings import Settings

if TYPE_CHECKING:
    from policyd.worker import Worker

log = logging.getLogger(__name__)


def _connectors_file(_ctx: click.Context, _param: click.Parameter, value: Path | None):
    return settings_for(connectors=value).connectors


connectors_option = click.option(
    "--connectors",
    "connectors_file",
    default=None,
    callback=_connectors_file,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Connector instances file [env: POLICYD_CONNECTORS].",
)


@contextmanager
def _worker(settings: Settings, *, drain: bool = False) -> Iterator[Worker]:
    """The worker of `settings` (with this host's decision-log drainer when `drain`); a
    bad connectors file is file:line errors and exit 1."""
    try:
        with compose.open_worker(settings, drain=drain) as runner:
            yield runner
    except ProblemsError as err:
        _fail(err.problems)


@main.command()
@click.option("--interval", default=5.0, show_default=True, help="Seconds between sweeps.")
@click.option("--once", is_flag=True, help="Run every periodic task once and exit.")
@click.option("--list-tasks", is_flag=True, help="List the periodic tasks and exit.")
@click.option(
    "--external-users",
    type=click.Choice(["none", "disable", "disable_then_delete"]),
    help="What to do with guests whose last access ended [env: POLICYD_EXTERNAL_USERS; "
    "default: none].",
)
@click.option(
    "--external-delete-after",
    help="With disable_then_delete: how long after, ISO-8601 [env: "
    "POLICYD_EXTERNAL_DELETE_AFTER; default: P30D].",
)
@click.option(
    "--reminders",
    help="Expiry reminders, this long before access ends; '' sends none [env: "
    "POLICYD_REMINDERS; default: P14D,P1D].",
)
@click.option(
    "--job-lease",
    help="How long a claimed job is this worker's; renewed while it works on it, so a dead "
    "worker's jobs wait this long at most [env: POLICYD_JOB_LEASE; default: PT1M].",
)
@spool_option
@interval_option
@database_option
@connectors_option
def worker(
    interval: float,
    once: bool,
    list_tasks: bool,
    external_users: str | None,
    external_delete_after: str | None,
    reminders: str | None,
    job_lease: str | None,
    spool_dir: Path | None,
    decision_log_interval: str | None,
    database_url: str,
    connectors_file: Path | None,
) -> None:
    """Run the periodic tasks (outbox jobs, expiry, approval timeouts, reminders, guests,
    this host's decision log); several workers may share a PostgreSQL.

    `--list-tasks` shows them (docs/architecture.md says where each is declared).
    """
    settings = settings_for(
        database_url=database_url,
        connectors=connectors_file,
        external_users=external_users,
        external_delete_after=external_delete_after,
        reminders=reminders,
        job_lease=job_lease,
        spool_dir=spool_dir,
        decision_log_interval=decision_log_interval,
    )
    if list_tasks:
        _list_tasks(settings, interval)
        return
    settings.configure_logging()
    _require_existing(settings.database)
    with _worker(settings, drain=True) as runner:
        if once:
            now = datetime.now(UTC)
            click.echo(f"swept: {runner.sweep(now=now)}")
            drained = runner.scheduler.run_due(now, lane="decision-log", every_task=True)
            stored = sum(run.counts.get("decision-log.drain", 0) for run in drained.values())
            folder = runner.scheduler.context.drainer.folder
            click.echo(f"decision log: stored {stored} entries from {folder}")
            failed = [run for run in runner.scheduler.last.values() if run.error]
            for run in failed:
                click.echo(f"task {run.name} failed: {run.error}", err=True)
            if failed:
                raise SystemExit(1)
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        log.info("worker %s running; Ctrl-C or SIGTERM stops it", runner.name)
        try:
            runner.loop(stop, interval=interval)
        except KeyboardInterrupt:
            stop.set()
        finally:
            stop.set()


def _list_tasks(settings: Settings, interval: float) -> None:
    """One line per periodic task of `policyd worker`: name, period, thread, what it does."""
    periods = compose.task_periods(settings)
    for task in compose.worker_tasks(WORKER):
        every = periods.get(task.name, task.every)
        if every is None:
            period = f"every {interval:g} s (--interval)"
        elif isinstance(every, str):
            period = f"cron {every}"
        else:
            period = f"every {every.total_seconds():g} s"
        lane = "" if task.lane == SWEEP else f" (own thread: {task.lane})"
        click.echo(f"{task.name:26} {period}{lane}\n{'':26} {task.summary}")


@main.group("jobs")
def jobs_group() -> None:
    """The delivery outbox."""


@jobs_group.command("list")
@click.option("--state", type=click.Choice([state.value for state in JobState]))
@database_option
def jobs_list(state: str | None, database_url: str) -> None:
    """Jobs with their state, attempts and last error."""
    with _session(database_url) as session:
        for job in _pages(lambda **page: JobService(session).list(state=state, **page)):
            error = f"  {job.last_error}" if job.last_error else ""
            click.echo(
                f"{job.id}  {job.state:7} {job.kind:6} {job.connector}:{job.resource} "
                f"for {job.subject_id} (attempt {job.attempts}){error}"
            )


@jobs_group.command("retry")
@click.argument("job_ids", nargs=-1, required=True)
@database_option
@actor_option
def jobs_retry(job_ids: tuple[str, ...], database_url: str, actor: str) -> None:
    """Queue failed jobs again (a worker runs them)."""
    with _session(database_url) as session:
        service = JobService(session)
        for job_id in job_ids:
            service.retry(_admin(actor), job_id, now=datetime.now(UTC))  # commits each
    click.echo(f"queued {len(job_ids)} job(s) again")


@main.group("connectors")
def connectors_group() -> None:
    """Configured connector instances."""


@connectors_group.command("list")
@connectors_option
def connectors_list(connectors_file: Path | None) -> None:
    """Instances and their types (the built-in `directory` is always there)."""
    try:
        instances = compose.connector_instances(settings_for(connectors=connectors_file))
    except ProblemsError as err:
        _fail(err.problems)
    for instance in instances.values():
        click.echo(f"{instance.name}  type {instance.type}")


@connectors_group.command("check")
@database_option
@connectors_option
def connectors_check(database_url: str, connectors_file: Path | None) -> None:
    """Ask every instance whether it can work; exit 1 if any cannot."""
    failed = 0
    with _worker(settings_for(database_url=database_url, connectors=connectors_file)) as runner:
        for name, error in compose.connector_health(runner.connectors).items():
            if error is not None:
                failed += 1
                click.echo(f"FAIL {name}: {error}")
            else:
                click.echo(f"ok   {name}")
    if failed:
        raise SystemExit(1)


@main.command()
@click.argument("connector", required=False)
@click.option("--fix", is_flag=True, help="Queue grants for missing and revokes for unauthorised.")
@database_option
@connectors_option
def reconcile(
    connector: str | None, fix: bool, database_url: str, connectors_file: Path | None
) -> None:
    """Compare each resource's real members with what live assignments grant."""
    from policyd.services.reconcile import reconcile as run_reconcile

    drifted = 0
    with (
        _worker(settings_for(database_url=database_url, connectors=connectors_file)) as runner,
        runner.sessions() as session,
    ):
        report = run_reconcile(
            session, runner.connectors, now=datetime.now(UTC), only=connector, fix=fix
        )
        for drift in report:
            where = f"{drift.connector}:{drift.resource}"
            if drift.error:
                click.echo(f"SKIP {where}: {drift.error}")
                continue
            for user in sorted(drift.missing):
                click.echo(f"MISSING      {where} {user}")
            for user in sorted(drift.unauthorised):
                click.echo(f"UNAUTHORISED {where} {user}")
            drifted += len(drift.missing) + len(drift.unauthorised)
        if fix and drifted:
            while runner.run_jobs(now=datetime.now(UTC), limit=100):
                pass
    click.echo(f"{drifted} difference(s)" + (" mended" if fix and drifted else ""))
    if drifted and not fix:
        raise SystemExit(1)
