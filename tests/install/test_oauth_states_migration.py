"""Migration 0012: the two OAuth state tables become one (``oauth_states``).

A pending Shopify install survives the upgrade (and can still be spent exactly once);
pending provider sign-ins are dropped, as the migration says; the downgrade restores the
two tables, keeping install states. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from engine.store.migrate import _alembic_config, upgrade
from engine.store.types import UTCDateTime

NOW = datetime(2027, 1, 12, 9, 0, tzinfo=UTC)


def _dt(name: str) -> sa.ColumnClause[datetime]:
    return sa.column(name, UTCDateTime())


SHOPS = sa.table("shops", sa.column("id"), sa.column("domain"), sa.column("timezone"),
                 sa.column("installed"), _dt("installed_at"))
OLD_INSTALL = sa.table("oauth_states", sa.column("id"), sa.column("shop_domain"),
                       _dt("created_at"), _dt("expires_at"), _dt("consumed_at"))
OLD_PROVIDER = sa.table("provider_oauth_states", sa.column("state_hash"),
                        sa.column("shop_id"), sa.column("provider"), sa.column("flow"),
                        sa.column("browser_hash"), _dt("created_at"), _dt("expires_at"))


def _engine_only(engine: Engine, revision: str, *, down: bool = False) -> None:
    """Move the engine's own branch (no plugin branches) to ``revision``."""
    if not down:
        upgrade(engine, revision, locations=[])
        return
    cfg = _alembic_config([])
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def test_upgrade_keeps_installs_drops_sign_ins_and_downgrades(bare_engine: Engine) -> None:
    _engine_only(bare_engine, "0011")
    with bare_engine.begin() as conn:
        conn.execute(SHOPS.insert().values(id="s" * 32, domain="a.myshopify.com",
                                           timezone="UTC", installed=True, installed_at=NOW))
        conn.execute(OLD_INSTALL.insert(), [
            dict(id="p" * 64, shop_domain="new.myshopify.com", created_at=NOW,
                 expires_at=NOW + timedelta(minutes=10), consumed_at=None),
            dict(id="u" * 64, shop_domain="old.myshopify.com", created_at=NOW,
                 expires_at=NOW + timedelta(minutes=10), consumed_at=NOW)])
        conn.execute(OLD_PROVIDER.insert().values(
            state_hash="g" * 64, shop_id="s" * 32, provider="google", flow="token",
            browser_hash="b" * 64, created_at=NOW, expires_at=NOW + timedelta(minutes=10)))

    _engine_only(bare_engine, "0012")
    assert "provider_oauth_states" not in inspect(bare_engine).get_table_names()
    with bare_engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, purpose, shop_domain, shop_id, flow, browser_hash, consumed_at "
            "FROM oauth_states ORDER BY id")).all()
    assert [(r.id[0], r.purpose, r.shop_domain, r.shop_id, r.flow, r.browser_hash,
             r.consumed_at is None) for r in rows] == [
        ("p", "shopify_install", "new.myshopify.com", None, None, "", True),
        ("u", "shopify_install", "old.myshopify.com", None, None, "", False)]
    # The purpose has no server default left: every new row must say whose it is.
    with pytest.raises(sa.exc.IntegrityError), bare_engine.begin() as conn:
        conn.execute(text("INSERT INTO oauth_states (id, created_at, expires_at) "
                          "VALUES ('x', :at, :at)"), {"at": NOW.replace(tzinfo=None)})
    # A provider state and a shop FK: deleting the shop removes its pending sign-ins.
    columns = {c["name"]: c for c in inspect(bare_engine).get_columns("oauth_states")}
    assert columns["shop_domain"]["nullable"] and columns["flow"]["nullable"]
    fks = inspect(bare_engine).get_foreign_keys("oauth_states")
    assert [(fk["constrained_columns"], fk["referred_table"]) for fk in fks] == [
        (["shop_id"], "shops")]

    with bare_engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO oauth_states (id, purpose, shop_id, flow, browser_hash, "
            "created_at, expires_at) VALUES ('q', 'google', :s, 't', 'b', :at, :at)"),
            {"s": "s" * 32, "at": NOW.replace(tzinfo=None)})
    _engine_only(bare_engine, "0011", down=True)
    names = inspect(bare_engine).get_table_names()
    assert "provider_oauth_states" in names
    with bare_engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM oauth_states ORDER BY id")).scalars().all() \
            == ["p" * 64, "u" * 64]
        assert conn.execute(text("SELECT count(*) FROM provider_oauth_states")).scalar() == 0
    columns = {c["name"] for c in inspect(bare_engine).get_columns("oauth_states")}
    assert columns == {"id", "shop_domain", "created_at", "expires_at", "consumed_at"}
    _engine_only(bare_engine, "0012")  # and up again
