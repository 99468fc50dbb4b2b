"""Database.rows: the hot path's one-statement reads outside the ORM answer as a session
would, keep the bind guard, and map driver errors like any other statement."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, literal, select, text

from engine.config import ConfigError, from_env
from engine.crypto import generate_key
from engine.errors import ValidationError
from engine.store.db import Database, database_unavailable
from engine.store.models import Shop

BY_ZONE = select(Shop.id, Shop.domain, Shop.installed, literal(7).label("seven")).where(
    Shop.timezone == bindparam("zone")).order_by(Shop.id)


def _add_shops(db: Database) -> None:
    with db.write() as session:
        for n in range(3):
            session.execute(text(
                "INSERT INTO shops (id, domain, timezone, installed, installed_at) "
                "VALUES (:id, :domain, :zone, :installed, CURRENT_TIMESTAMP)"),
                {"id": f"shop_{n}", "domain": f"s{n}.myshopify.com", "installed": n != 2,
                 "zone": ("Europe/Berlin", "Asia/Kolkata")[n % 2]})


def test_rows_are_the_sessions_rows(db_url: str) -> None:
    db = Database(db_url)
    try:
        _add_shops(db)
        for zone in ("Europe/Berlin", "Asia/Kolkata", "UTC"):
            with db.read() as session:
                expected = [tuple(r) for r in session.execute(BY_ZONE, {"zone": zone})]
            got = db.rows(BY_ZONE, {"zone": zone})
            assert [(i, d, bool(b), s) for i, d, b, s in got] == expected
        assert [r[0] for r in db.rows(BY_ZONE, {"zone": "Europe/Berlin"})] \
            == ["shop_0", "shop_2"]
    finally:
        db.dispose()


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800"])
def test_rows_keep_the_bind_guard(db_url: str, bad: str) -> None:
    db = Database(db_url)
    try:
        with pytest.raises(ValidationError):
            db.rows(BY_ZONE, {"zone": bad})
        assert db.rows(BY_ZONE, {"zone": "UTC"}) == []  # still serving
    finally:
        db.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_dropped_connection_is_unavailable_then_replaced(db_url: str) -> None:
    """The server ends the pooled connection: the next read is a DBAPIError that maps to
    503 (not a driver error that would be a 500), and the one after gets a new
    connection -- the dead one was invalidated, not handed out again."""
    db = Database(db_url, pool_size=1, max_overflow=0, pool_pre_ping=False)
    try:
        _add_shops(db)
        pid = db.rows(select(text("pg_backend_pid()")), {})[0][0]
        killer = Database(db_url)
        with killer.engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        killer.dispose()
        with pytest.raises(Exception) as caught:
            db.rows(BY_ZONE, {"zone": "Europe/Berlin"})
        assert database_unavailable(caught.value), repr(caught.value)
        assert len(db.rows(BY_ZONE, {"zone": "Europe/Berlin"})) == 2
        assert db.rows(select(text("pg_backend_pid()")), {})[0][0] != pid
    finally:
        db.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("prepared", [False, True])
def test_prepared_statements_only_when_asked_for(db_url: str, prepared: bool) -> None:
    """CONSULTBOOK_DATABASE_PREPARED_STATEMENTS: off (the default, safe behind PgBouncer in
    transaction pooling) no statement is prepared on the server however often it runs;
    on, the storefront's lookup is prepared after a few runs."""
    config = from_env({"CONSULTBOOK_DATABASE_URL": db_url, "SHOPIFY_API_KEY": "k",
                       "SHOPIFY_API_SECRET": "s", "CONSULTBOOK_ENCRYPTION_KEYS": generate_key(),
                       **({"CONSULTBOOK_DATABASE_PREPARED_STATEMENTS": "true"}
                          if prepared else {})})
    assert config.database_prepared_statements is prepared
    db = Database.of(config)
    try:
        for _ in range(8):
            db.rows(BY_ZONE, {"zone": "UTC"})
        statements = db.rows(select(text("statement FROM pg_prepared_statements")), {})
        assert any("shops" in s for (s,) in statements) is prepared, statements
    finally:
        db.dispose()


def test_the_setting_is_a_flag() -> None:
    with pytest.raises(ConfigError, match="CONSULTBOOK_DATABASE_PREPARED_STATEMENTS"):
        from_env({"CONSULTBOOK_DATABASE_PREPARED_STATEMENTS": "sometimes",
                  "SHOPIFY_API_KEY": "k", "SHOPIFY_API_SECRET": "s",
                  "CONSULTBOOK_ENCRYPTION_KEYS": generate_key()})
