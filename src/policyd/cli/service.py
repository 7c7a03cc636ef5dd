"""Commands for operators: db upgrade, publish, token, serve."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from policyd import compose
from policyd.cli.base import (
    ADMIN_PRINCIPAL,
    _admin,
    _fail,
    _load,
    _pages,
    _reason,
    _session,
    _shown,
    _sqlite_folder,
    actor_option,
    database_option,
    main,
    policies_argument,
    settings_for,
)
from policyd.collector import freeze_startup
from policyd.rules import ProblemsError
from policyd.rules.timing import parse_duration
from policyd.services.actor import Actor, Role
from policyd.services.tokens import TokenService, token_state
from policyd.services.versions import VersionService
from policyd.settings import Settings

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.serving import BaseWSGIServer


@main.group("db")
def db_group() -> None:
    """Manage the database schema."""


@db_group.command("upgrade")
@database_option
def db_upgrade(database_url: str) -> None:
    """Create the database (a SQLite file with its folder) or migrate it to the newest schema."""
    _sqlite_folder(database_url)
    database = compose.open_database(database_url)
    try:
        before = database.revision()
        database.upgrade()
        after = database.revision()
    except (OperationalError, ProgrammingError) as err:
        raise click.ClickException(
            f"cannot upgrade {_shown(database_url)}: {_reason(err)}"
        ) from None
    finally:
        database.dispose()
    if before == after:
        click.echo(f"{_shown(database_url)}: schema is up to date (revision {after})")
    else:
        click.echo(f"{_shown(database_url)}: schema upgraded from {before or 'empty'} to {after}")


@main.command()
@policies_argument
@click.option("-m", "--message", required=True, help="Why this version is published (audited).")
@click.option(
    "--connectors",
    "connectors_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Connector instances file; resources must name one of them [env: POLICYD_CONNECTORS].",
)
@database_option
@actor_option
def publish(
    directory: Path, message: str, connectors_file: Path | None, database_url: str, actor: str
) -> None:
    """Validate DIRECTORY and make it the active policy version; on any error nothing changes."""
    bundle = _load(directory)
    try:
        compose.check_connectors_file(bundle, settings_for(connectors=connectors_file).connectors)
    except ProblemsError as err:
        _fail(err.problems)
    with _session(database_url) as session:
        service = VersionService(session)
        before = service.active_id()
        version = service.publish(
            _admin(actor),
            bundle.files,
            message=message,
            now=datetime.now(UTC),
            git_commit=bundle.version.git_commit,
            # Outside a git work tree whether anything was uncommitted is not known.
            git_dirty=bundle.version.git_dirty if bundle.version.git_commit else None,
        )
    if bundle.version.git_dirty:
        click.echo(
            f"note: {directory} has uncommitted changes since git {bundle.version.git_commit} "
            "(a newly stored version records that)",
            err=True,
        )
    if before == version.id:
        click.echo(f"version {version.id} is already active; nothing changed")
        return
    click.echo(
        f"version {version.id}: {len(version.files)} files, packages {', '.join(version.packages)}"
    )
    click.echo(f"version {version.id} is now active (before: {before or 'none'})")


class Duration(click.ParamType):
    """An ISO-8601 duration such as P30D, as a timedelta."""

    name = "duration"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return parse_duration(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


@main.group("token")
def token_group() -> None:
    """Create, list and revoke API tokens."""


@token_group.command("create")
@click.option("--principal", required=True, help="Who the token authenticates as.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option(
    "--expires-in", type=Duration(), help="ISO-8601 duration, e.g. P30D [default: never]."
)
@click.option("--description")
@database_option
@actor_option
def token_create(principal, role, expires_in, description, database_url: str, actor: str) -> None:
    """Create a token and print its secret, which is shown only this once."""
    with _session(database_url) as session:
        token, plain = TokenService(session).create(
            _admin(actor),
            principal,
            role,
            now=datetime.now(UTC),
            expires_in=expires_in,
            description=description,
        )
    expires = _when(token.expires_at) if token.expires_at else "never"
    click.echo(
        f"created token {token.id} for {token.principal} (role {token.role}, expires {expires})"
    )
    click.echo(plain)
    click.echo("the token is shown only this once: store it now", err=True)


@token_group.command("list")
@database_option
def token_list(database_url: str) -> None:
    """List tokens with their state (never their secrets)."""
    now = datetime.now(UTC)
    with _session(database_url) as session:
        tokens = list(_pages(TokenService(session).list))
    if not tokens:
        click.echo("no tokens")
        return
    rows = [("ID", "PRINCIPAL", "ROLE", "STATE", "CREATED", "EXPIRES", "DESCRIPTION")]
    rows += [
        (
            t.id,
            t.principal,
            t.role,
            token_state(t, now),
            _when(t.created_at),
            _when(t.expires_at) if t.expires_at else "never",
            t.description or "",
        )
        for t in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


@token_group.command("revoke")
@click.argument("token_id")
@database_option
@actor_option
def token_revoke(token_id: str, database_url: str, actor: str) -> None:
    """Revoke the token TOKEN_ID at once (revoking twice changes nothing)."""
    now = datetime.now(UTC)
    with _session(database_url) as session:
        token = TokenService(session).revoke(_admin(actor), token_id, now=now)
    if token.revoked_at == now:
        click.echo(f"revoked token {token.id} of {token.principal}")
    else:
        click.echo(f"token {token.id} was already revoked at {_when(token.revoked_at)}")


@main.command()
@click.option("--host", help="Address to bind [env: POLICYD_HOST; default: 127.0.0.1].")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port to listen on [env: POLICYD_PORT; default: 8080].",
)
@click.option(
    "--policies",
    type=click.Path(file_okay=False, path_type=Path),
    help="Rules published when the database has no active version yet [env: "
    "POLICYD_POLICIES; default: policies].",
)
@database_option
@actor_option
def serve(
    host: str | None, port: int | None, policies: Path | None, database_url: str, actor: str
) -> None:
    """Run the HTTP API and a worker thread; on first start it creates the database, publishes
    the rules and prints an admin token."""
    from policyd.api.context import components  # Flask only for this command

    settings = settings_for(
        host=host, port=port, policies=policies, database_url=database_url, auto_upgrade=True
    )
    settings.configure_logging()
    server = build_server(settings, actor=_admin(actor), now=datetime.now(UTC))
    # The embedded default also runs the periodic tasks (expiry, jobs, ...) in a thread.
    stop = threading.Event()
    worker = threading.Thread(
        target=components(server.app).worker.loop,
        args=(stop,),
        daemon=True,
        name="worker",
    )
    worker.start()
    freeze_startup()  # the app and its policy version, out of the collector's full passes
    # SIGTERM stops like Ctrl-C: the spool is stored and everything closed before exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.http.shutdown).start())
    try:
        server.http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        worker.join(timeout=10)
        server.close()


@dataclass
class Server:
    """What `serve` runs: the app and the HTTP server already bound to its port."""

    app: Flask
    http: BaseWSGIServer
    url: str

    def close(self) -> None:
        """Release the port, the decision log (storing what is spooled), the rules engine and
        the database pool."""
        self.http.server_close()
        close_server(self.app)


def build_server(settings: Settings, *, actor: Actor, now: datetime) -> Server:
    """The server `serve` runs: schema upgraded, policies published, the port bound, and then,
    on the first start only, an admin token printed with a curl example. A port in use stops
    it before any token is made."""
    from werkzeug.serving import make_server

    from policyd.api import SettingError, create_app  # Flask only for this command
    from policyd.api.context import components

    _sqlite_folder(settings.database)
    if settings.decision_log_drain is None:  # the embedded server drains its own spool
        settings = settings.replace(decision_log_drain="thread")
    try:
        app = create_app(settings)
    except SettingError as err:
        raise click.UsageError(str(err)) from None
    except ProblemsError as err:  # a bad connectors file or notification template
        _fail(err.problems)
    try:
        http = make_server(settings.host, settings.port, app, threaded=True)
    except (OSError, SystemExit) as err:  # werkzeug exits on a port in use
        reason = getattr(err, "strerror", None) or "address in use or not available"
        close_server(app)
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port} ({reason}); "
            "choose another with --port or POLICYD_PORT"
        ) from None
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{f'[{host}]' if ':' in host else host}:{http.server_port}"
    server = Server(app, http, url)
    with components(app).database.session() as session:
        active = VersionService(session).active_id()
        tokens = TokenService(session)
        plain = None
        if not any(t.principal == ADMIN_PRINCIPAL for t in _pages(tokens.list)):
            _, plain = tokens.create(
                actor,
                ADMIN_PRINCIPAL,
                Role.ADMIN.value,
                now=now,
                description="created by `policyd serve` on the first start",
            )
    click.echo(f"policyd serving {url}  (API docs: {url}/docs)")
    click.echo(f"database {_shown(settings.database)}, active policy version {active or 'none'}")
    if active is None:
        click.echo(f"no rules are active: fix {settings.policies} and run `policyd publish -m ...`")
    if plain is None:
        click.echo("tokens: `policyd token create --principal NAME --role ROLE`")
        return server
    click.echo(
        f"\nFirst start: created an API token for principal {ADMIN_PRINCIPAL!r} (role admin)."
        "\nIt is shown only this once; store it now:\n"
        f"\n    {plain}\n"
        "\nTry it:\n"
        f'\n    curl -H "Authorization: Bearer {plain}" {url}/v1/policy-versions\n'
    )
    return server


def close_server(app: Flask) -> None:
    """Release what `create_app` opened: the decision log (its thread stopped, what is
    spooled stored), the rules engine and the database pool."""
    from policyd.api.context import components

    built = components(app)
    built.decision_log.close()
    built.runtime.close()
    built.database.dispose()
