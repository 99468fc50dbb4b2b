"""Persistence: SQLAlchemy 2 models, Alembic migrations and small query helpers.

The same models and migrations serve SQLite (the embedded default) and PostgreSQL.
"""

from engine.store.db import Database, new_id

__all__ = ["Database", "new_id"]
