"""The alembic migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from policyd.store import Database
from policyd.store.models import Base


def test_migrations_match_the_models(store: Database):
    """After `policyd db upgrade` autogenerate finds nothing to add, drop or change."""
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
