"""Query helpers shared by the services."""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


def page(session: Session, query: Select, offset: int, limit: int) -> tuple[list, int]:
    """One page of `query` and the total number of rows it matches."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    if offset >= total:  # also keeps absurd page numbers away from the database
        return [], total
    return list(session.scalars(query.offset(offset).limit(limit))), total
