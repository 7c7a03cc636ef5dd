"""Append-only, hash-chained audit trail, written in the same transaction as the change.

Records are collected per transaction and chained when it commits: the chain's tail is read
under a lock held until COMMIT (pg_advisory_xact_lock on PostgreSQL; SQLite's one writer at
a time), so concurrent writers form one chain, and the lock is the last one a transaction
takes, so it cannot deadlock with row locks. docs/audit.md defines the canonical content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.orm import Session, SessionTransaction

from policyd import logs
from policyd.services.actor import Actor
from policyd.services.errors import InvalidError
from policyd.services.listing import list_page
from policyd.store.models import AuditRecord
from policyd.store.query import insert_many

GENESIS = "0" * 64  # the prev_hash of the first record
# The content a record's digest covers: every column but id, prev_hash and hash (the chain's).
CONTENT = (
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "version",
    "request_id",
)
COLUMNS = ("id", *CONTENT, "prev_hash", "hash")
MAX_RECORD_ID = 2**31 - 1  # the id column is a 32-bit integer
_CHAIN_LOCK = 0x706F6C6963_0A  # pg_advisory_xact_lock key: one chain writer at a time
_PENDING = "policyd.audit.pending"
_BATCH = 5000


# One encoder, made once: json.dumps with these options would build a new one per call.
_CANONICAL_JSON = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


def canonical_time(at: datetime) -> str:
    """`at` as the chain hashes it: UTC, microseconds, a Z (2026-01-05T09:00:00.000000Z)."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical(record: Mapping[str, Any], at: str | None = None) -> bytes:
    """The bytes a record's content digest is taken over: its CONTENT columns as compact JSON
    with sorted keys, ASCII only (non-ASCII as \\u escapes), `at` as canonical_time (`at`:
    that text, when the caller has it already)."""
    content = {name: record[name] for name in CONTENT}
    content["at"] = at or canonical_time(record["at"])
    return _CANONICAL_JSON.encode(content).encode("ascii")


def content_digest(record: Mapping[str, Any], at: str | None = None) -> str:
    """sha256 (hex) of the record's canonical content."""
    return hashlib.sha256(canonical(record, at)).hexdigest()


def chain_hash(record_id: int, prev_hash: str, digest: str) -> str:
    """A record's hash: sha256 (hex) of `ID:PREV_HASH:CONTENT_DIGEST` in ASCII. Only this
    step needs the chain's tail, so the costly digest is made before the chain lock."""
    return hashlib.sha256(f"{record_id}:{prev_hash}:{digest}".encode("ascii")).hexdigest()


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash a stored record (with its id and prev_hash) must have."""
    return chain_hash(record["id"], record["prev_hash"], content_digest(record))


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
) -> None:
    """Record a change; the caller's commit stores it, chained, with the change."""
    audit_many(
        session,
        actor,
        now,
        [{"action": action, "object": obj, "before": before, "after": after, "version": version}],
    )


def audit_many(
    session: Session, actor: Actor, now: datetime, records: list[dict[str, Any]]
) -> None:
    """Record many changes (bulk lifecycle work, e.g. mass expiry); stored with one statement
    when the transaction commits.

    Each record names `action`, `object` (type, id) and optionally `before`, `after` and
    `version`. The request id of the HTTP request (or job) being handled is taken now.
    """
    if not records:
        return
    request_id = logs.request_id.get()
    _pending(session).extend(
        {
            "at": now,
            "actor": actor.principal,
            "action": record["action"],
            "object_type": record["object"][0],
            "object_id": record["object"][1],
            "before": record.get("before"),
            "after": record.get("after"),
            "version": record.get("version"),
            "request_id": request_id,
        }
        for record in records
    )


def _pending(session: Session) -> list[dict[str, Any]]:
    """The records waiting for this session's transaction to commit."""
    session.connection()  # begins the transaction the records belong to
    transaction = session.get_transaction()
    entry = session.info.get(_PENDING)
    if entry is None or entry[0] is not transaction:
        entry = session.info[_PENDING] = (transaction, [])
    return entry[1]


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    entry = session.info.pop(_PENDING, None)
    if entry is None or entry[0] is not session.get_transaction() or not entry[1]:
        return
    rows = entry[1]
    times: dict[datetime, str] = {}  # a bulk write's records share their time
    digests = [  # before any lock: the chain step below is one small sha256 per record
        content_digest(
            row, times.get(row["at"]) or times.setdefault(row["at"], canonical_time(row["at"]))
        )
        for row in rows
    ]
    session.flush()  # the changes first: on SQLite this takes the write lock, if anything
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    else:
        # SQLite has one writer at a time: a write (that changes nothing) takes the lock, so
        # no other transaction extends the chain between reading its tail and committing.
        connection.execute(text("UPDATE audit SET id = id WHERE 0"))
    last_id, prev = connection.execute(
        select(AuditRecord.id, AuditRecord.hash).order_by(AuditRecord.id.desc()).limit(1)
    ).first() or (0, GENESIS)
    for number, (row, digest) in enumerate(zip(rows, digests, strict=True), start=last_id + 1):
        row["id"] = number
        row["prev_hash"] = prev
        row["hash"] = prev = chain_hash(number, prev, digest)
    insert_many(session, AuditRecord, rows)


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    """A rolled-back transaction's records go with it."""
    entry = session.info.get(_PENDING)
    if entry is not None and entry[0] is transaction:
        del session.info[_PENDING]


def parse_anchor(value: str) -> tuple[str, int]:
    """`HASH@ID` (as `policyd audit verify` and the export print it) as (hash, id).

    Raises:
        InvalidError: naming `anchor`.
    """
    digest, _, number = value.strip().partition("@")
    digest = digest.lower()
    if (
        len(digest) != 64
        or any(c not in "0123456789abcdef" for c in digest)
        or not number.isdigit()
    ):
        raise InvalidError(
            f"an anchor reads HASH@ID (64 hex digits, @, a record id), not {value!r}",
            field="anchor",
        )
    return digest, int(number)


@dataclass
class ChainReport:
    """What a walk of the chain found: how far it went and every break (the first 100)."""

    records: int = 0
    first_id: int | None = None
    last_id: int | None = None
    last_hash: str | None = None
    broken: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.broken == 0

    @property
    def anchor(self) -> str | None:
        return f"{self.last_hash}@{self.last_id}" if self.last_id is not None else None

    def add(self, record_id: int, problem: str, keep: int = 100) -> None:
        self.broken += 1
        if len(self.problems) < keep:
            self.problems.append((record_id, problem))


class AuditService:
    def __init__(self, session: Session):
        self.session = session

    def list(
        self,
        *,
        object_id: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        request_id: str | None = None,
        after: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[AuditRecord], int | None]:
        query = select(AuditRecord)
        if object_id:
            query = query.where(AuditRecord.object_id == object_id)
        if request_id:
            query = query.where(AuditRecord.request_id == request_id)
        if action:
            query = query.where(AuditRecord.action == action)
        if since:
            query = query.where(AuditRecord.at >= since)
        query = query.order_by(AuditRecord.id)
        return list_page(self.session, query, after=after, offset=offset, limit=limit)

    def rows(
        self, *, since: datetime | None = None, after_id: int = 0, batch: int = _BATCH
    ) -> Iterator[dict[str, Any]]:
        """Every record (as a dict of its columns) in id order, read `batch` at a time by
        id, so memory stays bounded however long the log is."""
        columns = [AuditRecord.__table__.c[name] for name in COLUMNS]
        while True:
            query = select(*columns).where(AuditRecord.id > after_id)
            if since is not None:
                query = query.where(AuditRecord.at >= since)
            chunk = self.session.execute(query.order_by(AuditRecord.id).limit(batch)).all()
            for values in chunk:
                yield dict(zip(COLUMNS, values, strict=True))
            if len(chunk) < batch:
                return
            after_id = chunk[-1][0]

    def verify(self, *, anchor: tuple[str, int] | None = None) -> ChainReport:
        """Walk the chain in id order and report every record that does not fit it.

        From the start, the first record must follow GENESIS; from `anchor` (hash, id), that
        record must still be there with that hash. Each record's hash must match its content
        (else it was edited, or moved: the id is hashed), and its prev_hash must be the hash
        of the record before it (else records were deleted, inserted or reordered before it).
        After a break the walk goes on from the record found, so each break is named once.
        """
        report = ChainReport()
        prev_id, prev, after_id = None, GENESIS, 0
        anchor_id = None
        if anchor is not None:
            digest, anchor_id = anchor
            found = (  # ids are 32-bit: a larger one names no record (and PostgreSQL refuses it)
                self.session.scalar(select(AuditRecord.hash).where(AuditRecord.id == anchor_id))
                if anchor_id <= MAX_RECORD_ID
                else None
            )
            if found is None:
                report.add(anchor_id, "the anchor's record is missing (deleted)")
                return report
            if found != digest:
                report.add(
                    anchor_id,
                    f"hash is {found}, the anchor says {digest}: the record or the chain up to "
                    "it was rewritten",
                )
            after_id = anchor_id - 1
        for row in self.rows(after_id=after_id):
            record_id = row["id"]
            report.records += 1
            if report.first_id is None:
                report.first_id = record_id
            # The anchor's record links to what the anchor vouches for: not checked again.
            if record_id != anchor_id and row["prev_hash"] != prev:
                where = f"record {prev_id}" if prev_id is not None else "the start of the chain"
                report.add(
                    record_id,
                    f"prev_hash does not match the hash of {where}: a record before it was "
                    "deleted, inserted or moved",
                )
            if record_hash(row) != row["hash"]:
                report.add(record_id, "content does not match its hash (edited or moved)")
            prev_id, prev = record_id, row["hash"]
            report.last_id, report.last_hash = record_id, row["hash"]
        return report
