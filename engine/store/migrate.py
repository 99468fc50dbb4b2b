"""Schema migrations: bring a database to head, and tell whether it is there."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from engine.errors import SchemaOutOfDate

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revisions() -> frozenset[str]:
    """The heads of the migration graph. Feature areas may branch off a common revision
    (each area owns its own migration file), so there can be more than one head."""
    return frozenset(ScriptDirectory.from_config(_alembic_config()).get_heads())


def current_revisions(engine: Engine) -> frozenset[str]:
    with engine.connect() as conn:
        return frozenset(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Apply every migration up to `revision` in one connection."""
    cfg = _alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def check_schema(engine: Engine) -> None:
    """Raise SchemaOutOfDate unless the database is at head (what `serve` refuses to start on)."""
    current = current_revisions(engine)
    heads = head_revisions()
    if current != heads:
        state = ("has no schema" if not current
                 else f"is at revision {', '.join(sorted(current))}")
        raise SchemaOutOfDate(
            f"the database {state}, the code needs {', '.join(sorted(heads))}: "
            "run `consultbook migrate` first")
