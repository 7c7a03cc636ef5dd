"""Readiness probes: whether the database answers."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def ping(session: Session) -> None:
    """Run the cheapest statement; raises whatever the driver raises when it cannot."""
    session.execute(text("SELECT 1"))
