"""The queue of users whose directory data changed: marked cheaply, evaluated by the worker."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from policyd.rules.auto_assign import fingerprints
from policyd.services.errors import ConflictError
from policyd.store.models import Assignment, AutoAssignQueue, User

AUTO = "auto"  # Assignment.origin of auto-assigned access
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def mark_dirty(session: Session, subject_ids: Iterable[str], *, now: datetime) -> None:
    """Queue these users for auto-assignment, in the caller's transaction (one statement).

    A user already queued gets a new generation, so a sweep that read them before this
    change evaluates them again instead of dropping the mark.
    """
    ids = sorted(set(subject_ids))
    if not ids:
        return
    table = AutoAssignQueue.__table__
    dialect = session.get_bind().dialect.name
    statement = _INSERTS[dialect](table)
    if dialect == "postgresql":
        # One statement over an array: psycopg would run the INSERT once per user (a mass
        # expiry marks thousands per batch, and removing them from a group as many again).
        ids_type = postgresql.ARRAY(table.c.subject_id.type)
        stamp = literal(now, type_=table.c.marked_at.type)
        users = select(func.unnest(bindparam("ids", ids, type_=ids_type)), literal(1), stamp)
        statement = statement.from_select(["subject_id", "generation", "marked_at"], users)
        rows: list[dict[str, Any]] | None = None
    else:  # SQLite's driver runs one prepared statement row after row, in C
        rows = [{"subject_id": i, "generation": 1, "marked_at": now} for i in ids]
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.subject_id],
        set_={"generation": table.c.generation + 1, "marked_at": now},
    )
    session.execute(statement, rows)


def mark_everyone(session: Session, *, now: datetime) -> int:
    """Queue every user in the directory (a publish changed an auto-assignment rule);
    returns how many are queued now. One INSERT ... SELECT, whatever the directory's size."""
    table = AutoAssignQueue.__table__
    stamp = literal(now, type_=table.c.marked_at.type)
    users = select(User.id, literal(1), stamp).where(User.state != "deleted")
    statement = _INSERTS[session.get_bind().dialect.name](table).from_select(
        ["subject_id", "generation", "marked_at"], users
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.subject_id], set_={"generation": table.c.generation + 1}
    )
    session.execute(statement)
    return queued(session)


def take(session: Session, limit: int) -> list[tuple[str, int]]:
    """Up to `limit` queued users, oldest mark first, with their generation; locked, and
    skipped by other workers on PostgreSQL."""
    query = (
        select(AutoAssignQueue.subject_id, AutoAssignQueue.generation)
        .order_by(AutoAssignQueue.marked_at, AutoAssignQueue.subject_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(subject_id, generation) for subject_id, generation in session.execute(query)]


def done(session: Session, taken: list[tuple[str, int]]) -> None:
    """Drop the marks that were evaluated (a mark renewed meanwhile stays)."""
    if not taken:
        return
    table = AutoAssignQueue.__table__
    statement = delete(table).where(
        table.c.subject_id == bindparam("sid"), table.c.generation == bindparam("gen")
    )
    session.connection().execute(statement, [{"sid": s, "gen": g} for s, g in taken])


def queued(session: Session) -> int:
    """How many users wait to be evaluated."""
    return session.scalar(select(func.count()).select_from(AutoAssignQueue)) or 0


def requeue_holders(
    session: Session, runtime: Any, assignments: Sequence[Assignment], *, now: datetime
) -> None:
    """Queue the holders of ending requested or direct assignments of auto-assigned
    packages: auto-assignment stood aside while they held one, and may assign it now."""
    active = runtime.active if runtime is not None else None
    if active is None or not assignments:
        return
    auto = fingerprints(active.bundle)
    mark_dirty(
        session,
        [a.subject_id for a in assignments if a.origin != AUTO and a.package in auto],
        now=now,
    )


def refuse_auto_removal(assignment: Assignment) -> None:
    """Auto-assigned access ends when its holder stops matching, not by hand.

    Raises:
        ConflictError: the assignment is auto-assigned.
    """
    if assignment.origin == AUTO:
        raise ConflictError(
            f"assignment {assignment.id} was auto-assigned by package "
            f"{assignment.package!r}; it ends when its holder stops matching the package's "
            "autoAssign rule",
            field="id",
        )


def refuse_auto_extension(assignment: Assignment) -> None:
    """Auto-assigned access lasts while its holder matches: a grace period running is the
    rule's to end (matching again keeps the access), not a request's to extend.

    Raises:
        ConflictError: the assignment is auto-assigned.
    """
    if assignment.origin == AUTO:
        raise ConflictError(
            f"assignment {assignment.id} was auto-assigned by package "
            f"{assignment.package!r} and is not extended: it lasts while its holder matches "
            "the package's autoAssign rule",
            field="origin",
        )
