"""Alembic environment. Run through `consultbook migrate` (engine.store.migrate), not
alembic.ini."""

from __future__ import annotations

from alembic import context

from engine.store import models as _models  # noqa: F401  (every engine table)
from engine.store.base import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # pragma: no cover - always given by engine.store.migrate
        raise RuntimeError("run migrations through `consultbook migrate`")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
