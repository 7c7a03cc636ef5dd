"""The rows of bench/expiry.py on PostgreSQL, made by the server itself (INSERT ... SELECT over
generate_series): a million of each in minutes, where Python-made rows took a quarter hour."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection

CHUNK = 100_000  # rows per statement (and per transaction): bounded memory on the server


def ident(n: str, salt: str) -> str:
    """SQL for a 36-character id of row `n`, apart from other tables' by `salt`."""
    return f"md5(({n})::text || '{salt}')::uuid::text"


def user(n: str) -> str:
    return f"('bench-user-' || lpad(({n})::text, 7, '0'))"


def statements(first: int, last: int) -> list[tuple[str, str]]:
    """(table, SQL) for rows first..last; the parameters are :version, :granted, :expires,
    :package, :rule, :reason, :outcome, :matched and :result (JSON text), :group, :connector,
    :resource, :role, :attempts."""
    rows = f"FROM generate_series({first}, {last}) n"
    return [
        (
            "users",
            f"""INSERT INTO users (id, email, display_name, type, attributes, state)
            SELECT {user("n")}, {user("n")} || '@example.org', 'Bench user ' || n, 'member',
                   '{{}}', 'active' {rows}""",
        ),
        (
            "decisions",
            f"""INSERT INTO decisions (id, at, package, subject_id, outcome, rule, matched,
                reason, version, input, result, principal)
            SELECT {ident("n", "d")}, :granted, :package, {user("n")}, :outcome, :rule,
                   CAST(:matched AS json), :reason, :version,
                   json_build_object('subject', json_build_object('id', {user("n")})),
                   CAST(:result AS json),
                   {user("n")} {rows}""",
        ),
        (
            "requests",
            f"""INSERT INTO requests (id, package, subject_id, principal, state, stages,
                decision_id, version, rule, reason, expires_at, created_at, updated_at)
            SELECT {ident("n", "r")}, :package, {user("n")}, {user("n")}, 'delivered',
                   '[]', {ident("n", "d")}, :version, :rule, :reason, :expires, :granted,
                   :granted {rows}""",
        ),
        (
            "assignments",
            f"""INSERT INTO assignments (id, subject_id, package, state, request_id,
                decision_id, version, rule, starts_at, expires_at)
            SELECT {ident("n", "a")}, {user("n")}, :package, 'active', {ident("n", "r")},
                   {ident("n", "d")}, :version, :rule, :granted, :expires {rows}""",
        ),
        (
            "jobs",
            f"""INSERT INTO jobs (id, kind, connector, resource, role, subject_id,
                assignment_id, state, attempts, max_attempts, run_at, created_at, finished_at)
            SELECT {ident("n", "j")}, 'grant', :connector, :resource, :role, {user("n")},
                   {ident("n", "a")}, 'done', 1, :attempts, :granted, :granted, :granted
            {rows}""",
        ),
        (
            "memberships",
            f"""INSERT INTO memberships (group_id, user_id) SELECT :group, {user("n")} {rows}""",
        ),
    ]


def seed(
    connect: Callable[[], Connection],
    n: int,
    values: dict[str, object],
    deadline: Callable[[], bool],
    skip: tuple[str, ...] = (),
) -> None:
    """Insert rows 0..n-1 of every table but those of `skip`, CHUNK rows per transaction.

    Raises:
        TimeoutError: `deadline()` said the time is up.
    """
    for first in range(0, n, CHUNK):
        if deadline():
            raise TimeoutError("--timeout reached while inserting the data")
        with connect() as connection, connection.begin():
            for table, sql in statements(first, min(n, first + CHUNK) - 1):
                if table not in skip:
                    connection.execute(text(sql), values)
