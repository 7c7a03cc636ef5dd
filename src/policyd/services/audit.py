"""Append-only audit trail, written in the same transaction as the change it records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.services.actor import Actor
from policyd.store.models import AuditRecord
from policyd.store.query import insert_many, page


def audit(
    session: Session,
    actor: Actor,
    action: str,
    obj: tuple[str, str],
    *,
    now: datetime,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    version: str | None = None,
) -> AuditRecord:
    """Add an audit record to `session`; the caller's commit makes both durable together."""
    record = AuditRecord(
        at=now,
        actor=actor.principal,
        action=action,
        object_type=obj[0],
        object_id=obj[1],
        before=before,
        after=after,
        version=version,
    )
    session.add(record)
    return record


def audit_many(
    session: Session, actor: Actor, now: datetime, records: list[dict[str, Any]]
) -> None:
    """Write many audit records with one statement (bulk lifecycle work, e.g. mass expiry).

    Each record names `action`, `object` (type, id) and optionally `before`, `after` and
    `version`. Pending changes are flushed first, so the records follow them in id order.
    """
    if not records:
        return
    session.flush()
    rows = [
        {
            "at": now,
            "actor": actor.principal,
            "action": record["action"],
            "object_type": record["object"][0],
            "object_id": record["object"][1],
            "before": record.get("before"),
            "after": record.get("after"),
            "version": record.get("version"),
        }
        for record in records
    ]
    insert_many(session, AuditRecord, rows)


class AuditService:
    def __init__(self, session: Session):
        self.session = session

    def list(
        self,
        *,
        object_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[AuditRecord], int]:
        query = select(AuditRecord)
        if object_id:
            query = query.where(AuditRecord.object_id == object_id)
        if action:
            query = query.where(AuditRecord.action == action)
        if since:
            query = query.where(AuditRecord.at >= since)
        return page(self.session, query.order_by(AuditRecord.id), offset, limit)
