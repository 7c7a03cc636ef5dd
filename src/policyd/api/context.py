"""Access to the app's components, and per request to the session, the caller, the clock and
the policy runtime."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from policyd.api.components import Components
from policyd.rules import PolicyRuntime
from policyd.services.actor import Actor
from policyd.settings import Settings

if TYPE_CHECKING:
    from policyd.services.versions import PolicySync


# The one key of `app.extensions` that policyd uses.
KEY = "policyd"


def install(app: Flask, built: Components) -> None:
    """Store `built` on `app`, once (`create_app`)."""
    if KEY in app.extensions:
        raise RuntimeError("the app's components are already installed")
    app.extensions[KEY] = built


def components(app: Flask | None = None) -> Components:
    """The components of `app`, or of the current app."""
    return (current_app if app is None else app).extensions[KEY]


def session() -> Session:
    if "db_session" not in g:
        g.db_session = components().database.session()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


def actor() -> Actor:
    return g.actor


def settings() -> Settings:
    return components().settings


def now() -> datetime:
    return settings().clock()


def runtime() -> PolicyRuntime:
    parts = components()
    parts.sync.maybe_sync()
    return parts.runtime


def listeners() -> frozenset[str]:
    """The connector instances that take lifecycle events (webhooks)."""
    return components().connectors.listeners()


def current_sync() -> PolicySync:
    return components().sync


def paged(pagination, fetch: Callable[..., tuple[list, int | None]], *args, **filters) -> list:
    """Call a service's paged list method for the requested page and record the total (or
    that more than so many match), or, for a cursor page (no total), where the next page
    starts."""
    items, total = fetch(*args, offset=pagination.first_item, limit=pagination.page_size, **filters)
    # flask-smorest sends no header without a count; a cursor page's header drops it.
    pagination.item_count = 0 if total is None else total
    pagination.cursor = filters.get("after") is not None
    pagination.next_after = getattr(items, "next_after", None)
    pagination.more_than = getattr(items, "more_than", None)
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
        components().worker.run_jobs(now=now(), ids=ids)
        db_session.expire_all()
