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

from policyd import compose
from policyd.domain import IllegalTransitionError
from policyd.rules import (
    ProblemsError,
    load_bundle,
)
from policyd.rules.model import Bundle
from policyd.rules.source import Problem
from policyd.services.actor import Actor, Role
from policyd.services.errors import ServiceError
from policyd.settings import SettingError, Settings

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


ADMIN_PRINCIPAL = "admin"


def settings_for(**overrides: Any) -> Settings:
    """This process's settings: POLICYD_* from the environment, then the command's options
    (None: not given). A bad value stops the command (exit 2) naming the setting."""
    try:
        return Settings.from_env(**overrides)
    except SettingError as err:
        given = [name for name, value in overrides.items() if value is not None]
        for name in given:
            if err.setting == Settings.variable(name):  # an option's value, not the env's
                option = "--" + name.replace("_", "-")
                raise click.BadParameter(err.reason, param_hint=option) from None
        raise click.UsageError(str(err)) from None


def _database_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    return settings_for(database_url=value).database


database_option = click.option(
    "--database-url",
    default=None,
    callback=_database_url,
    help="SQLAlchemy URL of the database [env: POLICYD_DATABASE_URL; default: SQLite in "
    "policyd.db under POLICYD_HOME, the same from every folder].",
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
    """A session on `url`; a missing database or schema or a refused change becomes an error
    message. A SQLite file that does not exist is not created."""
    _require_existing(url)
    database = compose.open_database(url)
    try:
        with database.session() as session:
            yield session
    except (OperationalError, ProgrammingError) as err:
        raise click.ClickException(
            f"the database is not ready ({_reason(err)}); run `policyd db upgrade` first"
        ) from None
    except ServiceError as err:
        raise click.ClickException("\n".join([err.message, *err.errors])) from None
    except IllegalTransitionError as err:
        raise click.ClickException(str(err)) from None
    finally:
        database.dispose()


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for other databases and in-memory ones."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _sqlite_folder(url: str) -> None:
    """Make the folder of a SQLite database file (for the commands that create it)."""
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _require_existing(url: str) -> None:
    """Stop with a message naming the file when a SQLite database does not exist (opening it
    would leave an empty file behind)."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        parsed = make_url(url)
        raise click.ClickException(
            f"no policyd database at {parsed.database}: start `policyd serve` once or run "
            "`policyd db upgrade` to create it, or point POLICYD_DATABASE_URL (or "
            "--database-url) at the service's database"
        )


def _pages(list_page: Callable[..., tuple[list, int]]) -> Iterator[Any]:
    """Every item of a service's paged `list` method."""
    offset = 0
    while True:
        items, total = list_page(offset=offset, limit=100)
        yield from items
        offset += len(items)
        if not items or offset >= total:
            return
