"""Decision-log retention: entries older than N days go, a batch per short transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, tuple_
from sqlalchemy.orm import Session

from policyd.services.actor import SYSTEM
from policyd.services.audit import audit
from policyd.store.models import AccessRequest, Assignment, DecisionRecord
from policyd.store.query import among

BATCH = 5000  # rows a transaction deletes: short enough that no writer waits on it for long


def drop_expired_entries(session: Session, now: datetime, days: int, *, batch: int = BATCH) -> int:
    """Delete decision-log entries older than `days` days before `now` (0: keep them all).

    Entries that a request or an assignment refers to stay: they are why access was
    granted, and the access report shows them. The rest go in batches in the order of
    `ix_decisions_at`, each batch committed on its own, so the storer's inserts (new rows,
    no lock in common with old ones) never wait for a whole prune, on either database.
    One audit record says how many went and the cut-off. Idempotent: a worker may run it
    as often as it likes.

    Returns:
        How many entries were deleted.
    """
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    referenced = exists().where(AccessRequest.decision_id == DecisionRecord.id)
    granted = exists().where(Assignment.decision_id == DecisionRecord.id)
    key = tuple_(DecisionRecord.at, DecisionRecord.id)
    deleted, last = 0, None
    while True:
        query = select(DecisionRecord.at, DecisionRecord.id).where(DecisionRecord.at < cutoff)
        if last is not None:  # past the kept entries already walked, not from the start again
            query = query.where(DecisionRecord.at >= last[0], key > tuple_(*last))
        rows = session.execute(
            query.order_by(DecisionRecord.at, DecisionRecord.id).limit(batch)
        ).all()
        if not rows:
            break
        last = tuple(rows[-1])
        result = session.execute(
            delete(DecisionRecord)
            .where(among(session, DecisionRecord.id, [row.id for row in rows]))
            .where(~referenced, ~granted)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        deleted += result.rowcount
    if deleted:
        audit(
            session,
            SYSTEM,
            "decision_log.pruned",
            ("decision_log", "decisions"),
            now=now,
            after={"deleted": deleted, "before": cutoff.isoformat(), "retention_days": days},
        )
        session.commit()
    return deleted
