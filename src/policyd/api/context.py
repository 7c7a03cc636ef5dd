"""Per-request access to the session, the caller, the clock and the policy runtime."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flask import current_app, g
from sqlalchemy.orm import Session

from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor
from policyd.settings import Settings


def session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions["policyd.db"].session()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


def actor() -> Actor:
    return g.actor


def settings() -> Settings:
    return current_app.extensions["policyd.settings"]


def now() -> datetime:
    return settings().clock()


def runtime() -> PolicyRuntime:
    current_app.extensions["policyd.sync"].maybe_sync()
    return current_app.extensions["policyd.runtime"]


def listeners() -> frozenset[str]:
    """The connector instances that take lifecycle events (webhooks)."""
    return current_app.extensions["policyd.connectors"].listeners()


def current_sync():
    return current_app.extensions["policyd.sync"]


def paged(pagination, fetch: Callable[..., tuple[list, int | None]], *args, **filters) -> list:
    """Call a service's paged list method for the requested page and record the total, or,
    for a cursor page (no total), where the next page starts."""
    items, total = fetch(*args, offset=pagination.first_item, limit=pagination.page_size, **filters)
    # flask-smorest sends no header without a count; a cursor page's header drops it.
    pagination.item_count = 0 if total is None else total
    pagination.cursor = filters.get("after") is not None
    pagination.next_after = getattr(items, "next_after", None)
    return items


def deliver() -> None:
    """With inline delivery, run the jobs this request enqueued now, after its commit.

    The jobs are in the outbox either way: if this fails or the process dies, a worker runs
    them. Objects of this session are reloaded so responses show the delivered state.
    """
    db_session = g.get("db_session")
    if db_session is None:
        return
    ids = db_session.info.pop("enqueued", [])
    if ids and settings().delivery == "inline":
        current_app.extensions["policyd.worker"].run_jobs(now=now(), ids=ids)
        db_session.expire_all()
