"""store.query.table_of: values a service holds, as a table to join, on both databases."""

from __future__ import annotations

from sqlalchemy import select

from policyd.store.query import table_of

GROUPS = [
    (("directory", "group:Sales"), ["ada", "bob"]),
    (("directory", "group:Empty"), []),
    (("ldap", 'cn=O\'Brien "ops",ou=ü'), ["o'brien", 'say "hi"', "ünï"]),
]


def test_a_table_of_groups_gives_one_row_a_value(session):
    """Each value comes back once under its group's leading values, quotes and non-ASCII
    intact; a group with no values gives no row."""
    members = table_of(session, "members", ("connector", "resource", "user_id"), GROUPS)
    rows = session.execute(select(members.c.connector, members.c.resource, members.c.user_id))
    assert sorted(rows) == sorted(
        (connector, resource, user) for (connector, resource), users in GROUPS for user in users
    )


def test_a_table_of_nothing_is_empty(session):
    members = table_of(session, "members", ("connector", "resource", "user_id"), [])
    assert session.execute(select(members.c.user_id)).all() == []
