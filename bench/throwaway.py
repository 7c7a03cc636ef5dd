"""Throwaway PostgreSQL databases for the benchmarks: created fresh, dropped afterwards."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@contextmanager
def postgres_database(
    server_url: str, log: Callable[[str], None] = lambda message: None
) -> Iterator[str]:
    """The URL of a new, empty database on the PostgreSQL server of `server_url`; the
    database is dropped when the block ends."""
    server = make_url(server_url)
    if not server.get_backend_name().startswith("postgresql"):
        raise SystemExit(f"not a PostgreSQL URL: {server.render_as_string()}")
    name = f"policyd_bench_{secrets.token_hex(4)}"
    admin = create_engine(
        server.set(database=server.database or "postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        log(f"created PostgreSQL database {name}")
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            log(f"dropped PostgreSQL database {name}")
    finally:
        admin.dispose()


@contextmanager
def fresh_database(
    kind: str, server_url: str, log: Callable[[str], None] = lambda message: None
) -> Iterator[str]:
    """The URL of a new database of `kind` ("sqlite": a file in a temporary folder;
    "postgresql": one on the server of `server_url`), removed when the block ends."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="policyd-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'policyd.db'}"
        return
    with postgres_database(server_url, log) as url:
        yield url
