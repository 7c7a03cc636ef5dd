"""store.prepared.PreparedRead: the rows `connection.execute` gives, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, literal, literal_column, select, union_all
from sqlalchemy.exc import DataError, DBAPIError

from policyd.domain import UserType
from policyd.store.models import ApiToken, User
from policyd.store.prepared import PreparedRead, read_connection

AT = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)


def add_rows(session) -> None:
    session.add_all(
        [
            User(id="ada", email="ada@contoso.com", attributes={"cost_center": "42", "n": [1]}),
            User(id="bob", email=None, attributes={}),
            ApiToken(
                id="t1",
                principal="portal",
                role="app",
                token_hash="h" * 64,
                created_at=AT,
                expires_at=AT,
            ),
        ]
    )
    session.flush()


def test_columns_come_back_as_execute_reads_them(session):
    """JSON as Python values, timestamps as aware datetimes, text and NULL as they are;
    a statement's constants are bound once, a parameter used twice takes one value."""
    add_rows(session)
    statement = union_all(
        select(literal("u"), User.id, User.attributes).where(User.id == bindparam("uid")),
        select(literal("u"), User.id, User.attributes).where(User.id == bindparam("uid")),
    )
    connection = session.connection()
    assert PreparedRead(statement).rows(connection, {"uid": "ada"}) == [
        tuple(row) for row in connection.execute(statement, {"uid": "ada"})
    ]
    token = select(ApiToken.principal, ApiToken.expires_at, ApiToken.revoked_at).where(
        ApiToken.token_hash == bindparam("hash")
    )
    read = PreparedRead(token)
    assert read.first(connection, {"hash": "h" * 64}) == ("portal", AT, None)
    assert read.first(connection, {"hash": "x"}) is None
    by_email = PreparedRead(select(User.id).where(User.email.is_(None)))
    assert by_email.rows(connection, {}) == [("bob",)]


def test_a_constant_list_binds_as_separate_parameters(session):
    """An IN over constants, one parameter each (enum members bound as their values)."""
    add_rows(session)
    session.add_all(
        [
            User(id="gus", type=UserType.GUEST, attributes={}),
            User(id="sue", type=UserType.GUEST, attributes={}),
        ]
    )
    session.flush()
    kinds = (UserType.GUEST, "service")
    statement = select(User.id).where(
        User.type.in_([bindparam(f"k{n}", kind) for n, kind in enumerate(kinds)]),
        User.id != bindparam("not"),
    )
    rows = PreparedRead(statement).rows(session.connection(), {"not": "sue"})
    assert rows == [("gus",)]


def test_an_expanding_in_is_refused(session):
    statement = select(User.id).where(User.id.in_(["ada", "bob"]))
    with pytest.raises(ValueError, match="expanding"):
        PreparedRead(statement).rows(session.connection(), {})


def test_the_drivers_errors_are_raised_as_sqlalchemys(session):
    """A value the database refuses is SQLAlchemy's DataError (the API's 4xx), as
    `connection.execute` raises it; SQLite stores anything, PostgreSQL refuses a NUL."""
    read = PreparedRead(select(User.id).where(User.id == bindparam("uid")))
    if session.get_bind().dialect.name == "postgresql":
        with pytest.raises(DataError):
            read.rows(session.connection(), {"uid": "a\x00b"})
    else:
        assert read.rows(session.connection(), {"uid": "a\x00b"}) == []
    broken = PreparedRead(select(literal_column("nope")).select_from(User))
    with pytest.raises(DBAPIError):
        broken.rows(session.connection(), {})


def test_read_connection_reads_what_is_committed_or_the_tests_own_connection(store, session):
    """Outside a test's transaction, `read_connection` is a connection of its own; a session
    bound to a connection (the `session` fixture) reads on it."""
    with read_connection(session) as connection:
        assert connection is session.get_bind()
    with store.session() as own, read_connection(own) as connection:
        assert connection is not own.connection()
        assert connection.engine is store.engine
