"""Subjects recently read from the directory, per process, for POST /v1/decisions only."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from policyd.domain import Subject
from policyd.services.refresh_ahead import REFRESH_AT, RefreshClaims
from policyd.store.models import (
    Assignment,
    ConnectedOrganization,
    Group,
    Membership,
    OrganizationDomain,
    User,
)

# Everything a resolved subject is read from: users, memberships, held packages, domains.
WATCHED_TABLES = frozenset(
    model.__tablename__
    for model in (User, Group, Membership, Assignment, ConnectedOrganization, OrganizationDomain)
)
_MAX_ENTRIES = 10_000
# An entry lives between (1 - SPREAD) x ttl and ttl, drawn at random: subjects read together (a
# worker's first requests) lapse apart, so their reads from the database do not queue up in a
# burst of requests every ttl seconds in every worker.
SPREAD = 0.25
_CHANGED = "policyd.subjects_changed"  # Session.info flag: a watched table was written


class SubjectCache:
    """Directory subjects, as read before any caller's overlay, for `ttl` seconds.

    A commit that writes the directory or assignments through a watched session factory (see
    `watch`) clears the cache at once, so this process never decides on data older than its
    own last write. Writes by other processes become visible within `ttl` seconds
    (POLICYD_SUBJECT_CACHE_SECONDS, default 2; 0 turns the cache off); each entry lapses at a
    random moment of the last quarter of that (`SPREAD`), and is due for a refresh from three
    quarters of its life on (`REFRESH_AT`).
    """

    def __init__(
        self,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ):
        self.ttl = ttl
        self._clock = clock
        self._draw = draw  # uniform in [0, 1)
        self._entries: dict[str, tuple[Subject, float, float]] = {}  # subject, refresh, expiry
        self._refreshing = RefreshClaims()  # handed out by `lookup`, not put back yet
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """Read this before reading the directory, and pass it to `put`."""
        return self._generation

    def get(self, subject_id: str) -> Subject | None:
        return self.lookup(subject_id)[0]

    def lookup(self, subject_id: str) -> tuple[Subject | None, bool]:
        """The cached subject (None: none, or lapsed), and whether the caller should read it
        again once it can (then `put` it, or `refresh_failed`): true once per entry past
        `REFRESH_AT` of its life, so one caller refreshes it."""
        entry = self._entries.get(subject_id)
        if entry is None:
            return None, False
        now = self._clock()
        subject, refresh_at, expires_at = entry
        if now >= expires_at:
            return None, False
        return subject, now >= refresh_at and self._refreshing.take(subject_id)

    def forget(self, subject_id: str) -> None:
        """Drop the entry (the directory no longer has the subject)."""
        with self._lock:
            self._entries.pop(subject_id, None)
        self._refreshing.settle(subject_id)

    def refresh_failed(self, subject_id: str) -> None:
        """A refresh `lookup` handed out did not happen: the next use may try again."""
        self._refreshing.settle(subject_id)

    def put(self, subject_id: str, subject: Subject, generation: int) -> None:
        """Remember `subject`, unless the cache was cleared since `generation` was read (the
        subject may predate that write)."""
        if self.ttl <= 0:
            return
        with self._lock:
            if generation == self._generation:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
                now, lifetime = self._clock(), self.ttl * (1.0 - SPREAD * self._draw())
                expires_at = now + lifetime
                self._entries[subject_id] = (subject, now + lifetime * REFRESH_AT, expires_at)
        self._refreshing.settle(subject_id)  # after the new entry: no second refresh meanwhile

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
        self._refreshing.clear()

    def watch(self, sessions: sessionmaker[Session]) -> None:
        """Clear the cache whenever a session from `sessions` commits a write to a watched
        table, through the unit of work or a statement."""
        event.listen(sessions, "after_flush", _note_flush)
        event.listen(sessions, "do_orm_execute", _note_statement)
        event.listen(sessions, "after_commit", self._after_commit)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_CHANGED, False):
            self.clear()


def _note_flush(session: Session, _context: Any) -> None:
    for instance in (*session.new, *session.dirty, *session.deleted):
        if getattr(instance, "__tablename__", None) in WATCHED_TABLES:
            session.info[_CHANGED] = True
            return


def _note_statement(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in WATCHED_TABLES:
            state.session.info[_CHANGED] = True
