"""The `policyd` command group and what its commands share."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from policyd.rules import (
    ProblemsError,
    load_bundle,
)
from policyd.rules.model import Bundle
from policyd.rules.source import Problem
from policyd.services.actor import Actor, Role
from policyd.services.errors import ServiceError
from policyd.store import Database

DEFAULT_DIR = "policies"
policies_argument = click.argument(
    "directory", default=DEFAULT_DIR, type=click.Path(file_okay=False, path_type=Path)
)


@click.group()
@click.version_option(package_name="policyd")
def main() -> None:
    """policyd: access packages decided by versioned rule files."""


def _load(directory: Path) -> Bundle:
    try:
        return load_bundle(directory)
    except ProblemsError as err:
        _fail(err.problems)


def _fail(problems: list[Problem]) -> None:
    for problem in problems:
        click.echo(str(problem), err=True)
    files = len({p.file for p in problems})
    noun = "error" if len(problems) == 1 else "errors"
    click.echo(f"{len(problems)} {noun} in {files} file{'s' if files != 1 else ''}", err=True)
    sys.exit(1)


DEFAULT_DATABASE_URL = "sqlite:///policyd.db"
ADMIN_PRINCIPAL = "admin"
database_option = click.option(
    "--database-url",
    envvar="POLICYD_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="SQLAlchemy URL of the database [env: POLICYD_DATABASE_URL].",
)
actor_option = click.option(
    "--actor",
    default=lambda: _os_user(),
    show_default="your OS user name",
    help="Principal recorded (with the admin role) in the audit trail.",
)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # containers may run as a uid without a name
        return "cli"


def _admin(name: str) -> Actor:
    return Actor(name, Role.ADMIN)


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _reason(err: Exception) -> str:
    orig = getattr(err, "orig", None) or err
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


@contextmanager
def _session(url: str) -> Iterator[Session]:
    """A session on `url`; a missing schema or a refused change becomes an error message."""
    database = Database(url)
    try:
        with database.session() as session:
            yield session
    except (OperationalError, ProgrammingError) as err:
        raise click.ClickException(
            f"the database is not ready ({_reason(err)}); run `policyd db upgrade` first"
        ) from None
    except ServiceError as err:
        raise click.ClickException("\n".join([err.message, *err.errors])) from None
    finally:
        database.dispose()


def _pages(list_page: Callable[..., tuple[list, int]]) -> Iterator[Any]:
    """Every item of a service's paged `list` method."""
    offset = 0
    while True:
        items, total = list_page(offset=offset, limit=100)
        yield from items
        offset += len(items)
        if not items or offset >= total:
            return
