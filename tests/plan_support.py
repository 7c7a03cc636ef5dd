"""EXPLAIN of a statement a service sent, in the test's session: SQLite's EXPLAIN QUERY PLAN,
or PostgreSQL's plan with sequential scans off (the test tables are small, so the planner's
own choice says little: tests/api/test_list_plans.py says why), the setting undone after."""

from __future__ import annotations

from sqlalchemy.orm import Session


def explain(session: Session, statement: str, parameters) -> str:
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return "\n".join(row[-1] for row in rows)
    with connection.begin_nested() as savepoint:
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        shown = "\n".join(row[0] for row in rows)
        savepoint.rollback()
    return shown
