"""Migration 0014 (``claims.no_show_at``) up and down on an empty SQLite and PostgreSQL
database: a booking made before it is unmarked after it, the column takes a UTC instant,
and the capacity triggers of 0013 still count seats afterwards in both directions (a
batch copy of ``claims`` on SQLite would have dropped them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, text

from engine.store.migrate import _alembic_config, upgrade
from tests.schema_0012 import dt_column, seed_claim, seed_shop

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _seed(engine: Engine) -> None:
    """A shop, a service, an expert and one confirmed claim, in the 0012 schema (0013 then
    gives the claim its session and counters, as it did in production)."""
    with engine.begin() as conn:
        seed_shop(conn, T)
        seed_claim(conn, "c0", "confirmed", T, T)


def _status(engine: Engine, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE claims SET status = :s WHERE id = 'c0'"), {"s": status})


def _seats_used(engine: Engine, at: datetime) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT seats_used FROM claim_sessions WHERE key = :k"),
                                {"k": f"exp|svc|{int(at.timestamp())}"}).scalar_one())


def _columns(engine: Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns("claims")}


def test_0014_adds_and_drops_no_show_at_and_keeps_the_capacity_triggers(
        bare_engine: Engine) -> None:
    upgrade(bare_engine, "0012", locations=[])
    _seed(bare_engine)
    upgrade(bare_engine, "0013", locations=[])
    assert "no_show_at" not in _columns(bare_engine)
    assert _seats_used(bare_engine, T) == 1  # 0013 counted it

    upgrade(bare_engine, "0014", locations=[])
    column = {c["name"]: c for c in sa.inspect(bare_engine).get_columns("claims")}["no_show_at"]
    assert column["nullable"] is True
    claims = sa.table("claims", sa.column("id"), dt_column("no_show_at"))
    with bare_engine.connect() as conn:
        # A booking made before the migration is not marked.
        assert conn.execute(sa.select(claims.c.no_show_at)).scalar_one() is None
    marked = T + timedelta(hours=1, microseconds=5)
    with bare_engine.begin() as conn:
        conn.execute(claims.update().where(claims.c.id == "c0").values(no_show_at=marked))
    with bare_engine.connect() as conn:
        assert conn.execute(sa.select(claims.c.no_show_at)).scalar_one() == marked
    assert _seats_used(bare_engine, T) == 1  # marking changed no count
    # The triggers still count: a cancel frees the seat, confirming again takes it.
    _status(bare_engine, "cancelled")
    assert _seats_used(bare_engine, T) == 0
    _status(bare_engine, "confirmed")
    assert _seats_used(bare_engine, T) == 1

    cfg = _alembic_config([])
    with bare_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
    assert "no_show_at" not in _columns(bare_engine)
    with bare_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM claims")).scalar_one() == 1
    # ... and after the downgrade too.
    _status(bare_engine, "cancelled")
    assert _seats_used(bare_engine, T) == 0

    # Up again: the column comes back, empty.
    upgrade(bare_engine, "0014", locations=[])
    assert "no_show_at" in _columns(bare_engine)
    with bare_engine.connect() as conn:
        assert conn.execute(sa.select(claims.c.no_show_at)).scalar_one() is None
