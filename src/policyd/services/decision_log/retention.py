"""Decision-log retention: entries older than N days go, whole months at a time on PostgreSQL
(a partition dropped), a batch per short transaction elsewhere and inside the boundary month."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import delete, false, select, text, tuple_
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from policyd.services.actor import SYSTEM
from policyd.services.audit import audit
from policyd.store import partitions
from policyd.store.models import DecisionRecord
from policyd.store.partitions import Month
from policyd.store.query import among

log = logging.getLogger(__name__)

BATCH = 5000  # rows a transaction deletes: short enough that no writer waits on it for long
# How long a partition drop waits for its moment of exclusive lock on `decisions_log`: the
# storer's inserts queue behind a waiting drop, so it gives up soon and tries again.
DROP_LOCK_TIMEOUT_MS = 500
DROP_ATTEMPTS = 20
AHEAD = 1  # months past the current one that have their partition ready


def drop_expired_entries(session: Session, now: datetime, days: int, *, batch: int = BATCH) -> int:
    """Delete decision-log entries older than `days` days before `now` (0: keep them all).

    Kept entries (a request or an assignment refers to them) stay: they are why access
    was granted, and the access report shows them. On PostgreSQL each month partition that
    ends by the cut-off is dropped whole (`drop_months`); what is left before the cut-off
    (the boundary month, the default partition, SQLite's table) goes in batches in the order
    of `ix_decisions_at`, each committed on its own, so the storer's inserts never wait for a
    whole prune. One audit record says how many went and the cut-off. Idempotent.

    Returns:
        How many entries were deleted.
    """
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    dropped, months = drop_months(session, cutoff)
    deleted = dropped + delete_in_batches(session, cutoff, batch)
    if deleted:
        after = {"deleted": deleted, "before": cutoff.isoformat(), "retention_days": days}
        if months:
            after["partitions_dropped"] = [month.name for month in months]
        audit(
            session,
            SYSTEM,
            "decision_log.pruned",
            ("decision_log", "decisions"),
            now=now,
            after=after,
        )
        session.commit()
    return deleted


def drop_months(session: Session, cutoff: datetime) -> tuple[int, list[Month]]:
    """Drop the month partitions that end by `cutoff` (PostgreSQL; elsewhere nothing).

    Each drop is its own transaction and waits at most `DROP_LOCK_TIMEOUT_MS` for its lock;
    one that cannot get it is tried again, and left for the next prune after
    `DROP_ATTEMPTS`. No writer ever inserts into such a month (entries are stored at the
    time they were decided), so counting its rows first gives the number the drop deletes.

    Returns:
        How many entries went, and the months dropped.
    """
    if not partitions.is_partitioned(session.connection()):
        return 0, []
    expired = [month for month in partitions.months(session.connection()) if month.end <= cutoff]
    session.commit()
    dropped, done = 0, []
    for month in expired:
        rows = partitions.count_rows(session.connection(), month)
        session.commit()
        if _drop(session, month):
            dropped += rows
            done.append(month)
    return dropped, done


def _drop(session: Session, month: Month) -> bool:
    for attempt in range(DROP_ATTEMPTS):
        try:
            partitions.drop_month(session.connection(), month, DROP_LOCK_TIMEOUT_MS)
            session.commit()
            return True
        except OperationalError:  # lock_timeout: a long reader or writer holds the table
            session.rollback()
            time.sleep(min(0.05 * 2**attempt, 2.0))
    log.warning("decision log: could not drop %s (busy); the next prune tries again", month.name)
    return False


def ensure_partitions(session: Session, now: datetime, *, ahead: int = AHEAD) -> list[str]:
    """Create the month partitions of `now`'s month and the `ahead` months after it that are
    missing (PostgreSQL; elsewhere nothing), each in its own short transaction. Creating one
    locks `decisions_log` for a moment, so like a drop it waits at most
    `DROP_LOCK_TIMEOUT_MS` for that; a busy table leaves the month to the next run (the task
    runs every 6 hours for a month that is needed only when it starts).

    Returns:
        The names of the partitions created.
    """
    if not partitions.is_partitioned(session.connection()):
        return []
    created = []
    month = Month(partitions.month_of(now))
    for _ in range(ahead + 1):
        connection = session.connection()
        connection.execute(text(f"SET LOCAL lock_timeout = {DROP_LOCK_TIMEOUT_MS}"))
        try:
            if partitions.create_month(connection, month):
                created.append(month.name)
            session.commit()
        except OperationalError:
            session.rollback()
            log.warning("decision log: could not create %s (busy); next run", month.name)
        month = month.next()
    return created


def delete_in_batches(session: Session, cutoff: datetime, batch: int = BATCH) -> int:
    """Delete the entries before `cutoff` that are not kept, `batch` a transaction, in the
    order of `ix_decisions_at`; how many went."""
    key = tuple_(DecisionRecord.at, DecisionRecord.id)
    expired = (DecisionRecord.at < cutoff, DecisionRecord.kept == false())
    deleted, last = 0, None
    while True:
        query = select(DecisionRecord.at, DecisionRecord.id).where(*expired)
        if last is not None:  # past the rows walked already, not from the start again
            query = query.where(DecisionRecord.at >= last[0], key > tuple_(*last))
        rows = session.execute(
            query.order_by(DecisionRecord.at, DecisionRecord.id).limit(batch)
        ).all()
        if not rows:
            break
        last = tuple(rows[-1])
        result = session.execute(
            delete(DecisionRecord)
            .where(among(session, DecisionRecord.id, [row.id for row in rows]), *expired)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        deleted += result.rowcount
    return deleted
