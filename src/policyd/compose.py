"""The composition root: builds the database, connectors, notifiers and the worker for every
process kind (the API, `policyd serve`, `policyd worker`, CLI commands) from one Settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from policyd.connectors.config import Connectors, load_instances
from policyd.notify.config import Notifiers, load_notifiers
from policyd.rules import Bundle, PolicyRuntime
from policyd.services.decision_log import Drainer, default_folder
from policyd.services.external_users import ExternalUsers
from policyd.services.memberships import DirectoryMemberships
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
) -> Worker:
    """The lifecycle worker: delivery, expiry, timeouts, reminders, guests. `sync` keeps
    `runtime` on the active version; every sweep checks it.

    Raises:
        ProblemsError: the notifiers in the connectors file are invalid (file:line).
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
    )


@contextmanager
def open_drainer(settings: Settings) -> Iterator[Drainer]:
    """A drainer of this host's decision-log spool folder into the settings' database
    (`policyd decision-log drain`, `policyd worker`); its database is closed afterwards."""
    database = Database(settings.database)
    try:
        yield Drainer(database.engine, settings.spool_dir or default_folder(database.engine))
    finally:
        database.dispose()
