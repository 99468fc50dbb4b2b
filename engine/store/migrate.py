"""Schema migrations: bring a database to head, and tell whether it is there.

The engine's version scripts live in ``migrations/versions``; plugins add folders of
their own (``consultbook_migration_locations``, each its own branch). Every function
takes those folders as ``locations``; ``None`` means "the folders of the plugins this
deployment loads" (read once per process through the plugin manager, honouring
``CONSULTBOOK_DISABLE_PLUGINS``), so ``consultbook migrate`` and ``serve`` agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from engine.errors import SchemaOutOfDate

MIGRATIONS = Path(__file__).parent / "migrations"


def default_locations() -> tuple[str, ...]:
    """The migration folders of the plugins this deployment loads."""
    from engine.config import from_env
    from engine.plugins import plugin_migration_locations

    return plugin_migration_locations(from_env(require_secrets=False))


def _alembic_config(locations: Sequence[str] | None = None) -> AlembicConfig:
    extra = default_locations() if locations is None else tuple(locations)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(
        [str(MIGRATIONS / "versions"), *extra]))
    return cfg


def head_revisions(locations: Sequence[str] | None = None) -> frozenset[str]:
    """The heads of the migration graph: the engine's and each plugin branch's."""
    return frozenset(ScriptDirectory.from_config(_alembic_config(locations)).get_heads())


def current_revisions(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine, revision: str = "heads",
            locations: Sequence[str] | None = None) -> None:
    """Apply every migration up to `revision` (engine and plugin branches) in one
    connection."""
    cfg = _alembic_config(locations)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def check_schema(engine: Engine, locations: Sequence[str] | None = None) -> None:
    """Raise SchemaOutOfDate unless the database is at every head, the plugins' included
    (what `serve` refuses to start on)."""
    current = current_revisions(engine)
    heads = head_revisions(locations)
    if current != heads:
        state = ("has no schema" if not current
                 else f"is at revision {', '.join(sorted(current))}")
        raise SchemaOutOfDate(
            f"the database {state}, the code needs {', '.join(sorted(heads))}: "
            "run `consultbook migrate` first")
