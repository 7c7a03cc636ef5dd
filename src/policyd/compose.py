"""The composition root: builds the database, connectors, notifiers, the worker and its
periodic tasks for every process kind (the API, `policyd serve`, `policyd worker`, CLI
commands) from one Settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from policyd.connectors.base import ConnectorError
from policyd.connectors.config import Connectors, InstanceConfig, load_instances
from policyd.notify.config import Notifiers, load_notifiers
from policyd.notify.template import TemplateProblemsError, Templates, shipped_templates
from policyd.periodic import SERVE, TASKS, WORKER, PeriodicTask
from policyd.rules import Bundle, PolicyRuntime, Problem, ProblemsError
from policyd.services.decision_log import Drainer, default_folder
from policyd.services.external_users import ExternalUsers
from policyd.services.memberships import DirectoryMemberships
from policyd.services.messages import Messages
from policyd.services.versions import PolicySync, check_connectors
from policyd.settings import Settings, environment
from policyd.store import Database
from policyd.worker import Worker


def open_database(url: str) -> Database:
    """The database at `url`: one engine and session factory (dispose of it when done)."""
    return Database(url)


def check_connectors_file(bundle: Bundle, path: str | Path | None) -> None:
    """Every resource of `bundle` names an instance of the connectors file at `path` (or a
    built-in one), in a form its type accepts; publishing and `policyd check` use it.

    Raises:
        ProblemsError: the file is invalid, or a resource does not fit it (file:line).
    """
    instances = load_instances(path)
    check_connectors(bundle, {name: config.type for name, config in instances.items()})


def open_connectors(settings: Settings, database: Database) -> Connectors:
    """The configured connector instances (created lazily on first use).

    Raises:
        ProblemsError: the connectors file is unreadable or invalid (file:line).
    """
    instances = load_instances(settings.connectors)
    memberships = DirectoryMemberships(database.session)
    return Connectors(instances, memberships, environ=environment())


def build_worker(
    settings: Settings,
    database: Database,
    connectors: Connectors,
    runtime: PolicyRuntime,
    sync: PolicySync,
    *,
    process: str = SERVE,
    drainer: Drainer | None = None,
    templates: Templates | None = None,
) -> Worker:
    """The lifecycle worker: delivery, and the periodic tasks of `process` (expiry,
    timeouts, reminders, guests; with `drainer`, this host's decision log). `sync` keeps
    `runtime` on the active version; every pass checks it. `templates`: the notification
    templates, if already loaded.

    Raises:
        ProblemsError: the notifiers in the connectors file are invalid, or a notification
            template is bad (file:line).
    """
    notifiers = Notifiers(load_notifiers(settings.connectors), environ=environment())
    return Worker(
        database.session,
        connectors,
        runtime,
        notifiers=notifiers,
        external_users=ExternalUsers(settings.external_users),
        delete_after=settings.external_delete_after,
        reminders=settings.reminders,
        lease=settings.job_lease,
        policy_sync=sync,
        process=process,
        drainer=drainer,
        every=task_periods(settings),
        decision_log_retention=settings.decision_log_retention,
        messages=Messages(templates or load_templates(settings), settings.public_url, runtime),
        approval_reminder=settings.approval_reminder,
    )


def load_templates(settings: Settings) -> Templates:
    """The notification templates: the shipped ones under the settings' folder, each
    checked (`policyd notifications check`, and every server and worker at start-up).

    Raises:
        ProblemsError: a template does not load or render with its event's variables
            (file:line).
    """
    if settings.notification_templates is None:
        return shipped_templates(settings.notification_language)
    try:
        return Templates(settings.notification_templates, settings.notification_language)
    except TemplateProblemsError as err:
        raise ProblemsError(Problem(p.file, p.line, p.message) for p in err.problems) from None


def task_periods(settings: Settings) -> dict[str, timedelta]:
    """Periods of periodic tasks that settings set, by task name."""
    return {"decision-log.drain": timedelta(seconds=settings.decision_log_interval)}


def worker_tasks(process: str = WORKER) -> list[PeriodicTask]:
    """The registered periodic tasks that `process` runs, in the order a pass runs them."""
    return sorted(TASKS.tasks(process), key=lambda task: (task.outbox, task.order))


@contextmanager
def open_worker(settings: Settings, *, drain: bool = False) -> Iterator[Worker]:
    """The worker of `settings` (`policyd worker`), on the active policy version, with
    this host's decision-log drainer when `drain`; everything closed afterwards.

    Raises:
        ProblemsError: the connectors file is unreadable or invalid (file:line).
    """
    with ExitStack() as stack:
        database = open_database(settings.database)
        stack.callback(database.dispose)
        runtime = PolicyRuntime(memo_size=settings.match_memo, resident=settings.resident_packages)
        stack.callback(runtime.close)
        connectors = open_connectors(settings, database)
        stack.callback(connectors.close)
        drainer = None
        if drain:
            drainer = Drainer(
                database.engine, settings.spool_dir or default_folder(database.engine)
            )
        # A long-running worker follows publications, as the API does.
        sync = PolicySync(runtime, database.session, settings.sync_interval)
        worker = build_worker(
            settings, database, connectors, runtime, sync, process=WORKER, drainer=drainer
        )
        sync.sync()
        yield worker


def connector_instances(settings: Settings) -> dict[str, InstanceConfig]:
    """The connector instances the settings' file declares (the directory always).

    Raises:
        ProblemsError: the file is unreadable or invalid (file:line).
    """
    return load_instances(settings.connectors)


def connector_health(connectors: Connectors) -> dict[str, str | None]:
    """Each instance's answer to `health()`: None when it can work, else why not."""
    answers: dict[str, Any] = {}
    for name in connectors.instances:
        try:
            connectors.get(name).health()
        except ConnectorError as err:
            answers[name] = str(err)
        else:
            answers[name] = None
    return answers


@contextmanager
def open_drainer(settings: Settings) -> Iterator[Drainer]:
    """A drainer of this host's decision-log spool folder into the settings' database
    (`policyd decision-log drain`, `policyd worker`); its database is closed afterwards."""
    database = Database(settings.database)
    try:
        yield Drainer(database.engine, settings.spool_dir or default_folder(database.engine))
    finally:
        database.dispose()
