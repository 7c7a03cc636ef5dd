"""Database access: engine and sessions, migrations, models."""

from policyd.store.database import Database, upgrade

__all__ = ["Database", "upgrade"]
