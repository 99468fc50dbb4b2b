"""The catalog version (migration 0016) and what it makes exact (issue 14).

Raw SQL first, on a plain connection so that no service code can stand in for the
database: an insert, an update and a delete of each table the catalog read cache holds
moves the shop's ``catalog_versions.version`` (and no other shop's), a change of the
shop's timezone does too, other writes of the shop row and rolled-back writes do not;
the migration goes up and down leaving the ``claims`` triggers of 0013 and 0015 alone.

Then the service: an admin edit through another app over the same database (its own
caches: another worker or instance) is in this app's very next availability answer,
with no wait; and an availability answer served from the cache costs one statement --
the shop lookup, which reads the catalog and claim versions with the shop -- also after
the read cache's TTL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import falcon.testing
import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

from engine.bootstrap import Context, bootstrap
from engine.services.shops import ShopRef
from engine.store.migrate import _alembic_config, upgrade
from tests.conftest import Admin, Storefront, make_catalog, make_config
from web.app import create_app

# --------------------------------------------------------------------------- raw SQL


class Raw:
    """A plain engine on the test database, and the ids of two shops' catalogs."""

    def __init__(self, engine: Engine, shop: str, other: str, cat: dict[str, Any]) -> None:
        self.engine, self.shop, self.other, self.cat = engine, shop, other, cat

    def version(self, shop: str | None = None) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(
                text("SELECT version FROM catalog_versions WHERE shop_id = :s"),
                {"s": shop or self.shop}).scalar() or 0)

    def copy(self, conn: Connection, table: str, where: str, **changed: Any) -> None:
        """Insert a copy of the row of ``table`` matching ``where``, with ``changed``."""
        cols = [c["name"] for c in sa.inspect(conn).get_columns(table)]
        values = ", ".join(f":{c}" if c in changed else c for c in cols)
        conn.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) "
                          f"SELECT {values} FROM {table} WHERE {where}"), changed)


@pytest.fixture
def raw(ctx: Context, admin: Admin, other_shop: ShopRef) -> Iterator[Raw]:
    cat = make_catalog(admin, experts=2)
    schedule = {"weekly": {"tue": [["09:00", "12:00"]]},
                "overrides": [{"date": "2026-12-24", "windows": []}]}
    assert admin("PUT", f"/experts/{cat['experts'][0]}/schedule",
                 schedule).status_code == 200
    engine = create_engine(ctx.config.database_url, poolclass=NullPool)
    with engine.connect() as conn:
        shop = conn.execute(text("SELECT id FROM shops WHERE domain = :d"),
                            {"d": "alpha.myshopify.com"}).scalar_one()
    yield Raw(engine, shop, other_shop.id, cat)
    engine.dispose()


def _moves(raw: Raw, sql: str | None = None, *, copy: tuple[Any, ...] | None = None,
           **params: Any) -> bool:
    """Whether the statement (or copy) run in a transaction of its own moves the shop's
    version; the other shop's never moves."""
    before, other = raw.version(), raw.version(raw.other)
    with raw.engine.begin() as conn:
        if copy is not None:
            table, where, changed = copy
            raw.copy(conn, table, where, **changed)
        else:
            assert sql is not None
            assert conn.execute(text(sql), params).rowcount >= 1
    assert raw.version(raw.other) == other
    after = raw.version()
    assert after >= before
    return after > before


def test_each_catalog_tables_writes_move_the_shops_version(raw: Raw) -> None:
    svc, (e0, e1) = raw.cat["service"], raw.cat["experts"]
    for table, key, column in (("services", svc, "title"), ("experts", e0, "name")):
        assert _moves(raw, copy=(table, f"id = '{key}'", {"id": f"{key}_copy"})), table
        assert _moves(raw, f"UPDATE {table} SET {column} = 'x' WHERE id = :i", i=key), table
        assert _moves(raw, f"DELETE FROM {table} WHERE id = :i", i=f"{key}_copy"), table

    # The link between an expert and a service.
    assert _moves(raw, "DELETE FROM expert_services WHERE expert_id = :e", e=e1)
    assert _moves(raw, "INSERT INTO expert_services (expert_id, service_id) "
                  "VALUES (:e, :s)", e=e1, s=svc)
    assert _moves(raw, "UPDATE expert_services SET expert_id = :e WHERE expert_id = :e",
                  e=e1)

    # An expert's weekly hours and date overrides (through the expert's shop).
    hours = "(SELECT min(id) FROM weekly_hours WHERE expert_id = '" + e0 + "')"
    assert _moves(raw, copy=("weekly_hours", f"id = {hours}", {"id": 999_001}))
    assert _moves(raw, "UPDATE weekly_hours SET end_minute = 700 WHERE id = 999001")
    assert _moves(raw, "DELETE FROM weekly_hours WHERE id = 999001")
    day = "(SELECT min(id) FROM date_overrides WHERE expert_id = '" + e0 + "')"
    assert _moves(raw, copy=("date_overrides", f"id = {day}",
                             {"id": 999_002, "date": "2026-12-31"}))
    assert _moves(raw, "UPDATE date_overrides SET date = '2027-01-01' WHERE id = 999002")
    assert _moves(raw, "DELETE FROM date_overrides WHERE id = 999002")

    # The shop's settings.
    assert _moves(raw, "UPDATE shop_settings SET pending_hold_hours = 5 WHERE shop_id = :s",
                  s=raw.shop)
    assert _moves(raw, "DELETE FROM shop_settings WHERE shop_id = :s", s=raw.shop)
    assert _moves(raw, copy=("shop_settings", f"shop_id = '{raw.other}'",
                             {"shop_id": raw.shop}))

    # The shop row: its timezone (an expert's default zone), nothing else of it.
    assert _moves(raw, "UPDATE shops SET timezone = 'Asia/Tokyo' WHERE id = :s", s=raw.shop)
    assert not _moves(raw, "UPDATE shops SET timezone = 'Asia/Tokyo' WHERE id = :s",
                      s=raw.shop)
    assert not _moves(raw, "UPDATE shops SET installed = :t WHERE id = :s", s=raw.shop,
                      t=True)


def test_a_statement_over_many_rows_and_a_rollback(raw: Raw) -> None:
    before = raw.version()
    with raw.engine.begin() as conn:
        conn.execute(text("UPDATE experts SET name = 'y' WHERE shop_id = :s"), {"s": raw.shop})
    moved = raw.version() - before
    # PostgreSQL bumps once per statement, SQLite once per row.
    assert moved == (1 if raw.engine.dialect.name == "postgresql" else 2)
    before = raw.version()
    with raw.engine.connect() as conn:
        conn.execute(text("UPDATE services SET title = 'z' WHERE shop_id = :s"),
                     {"s": raw.shop})
        conn.rollback()
    assert raw.version() == before


def _triggers(engine: Engine, table: str) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            sql = ("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                   "AND tgrelid = CAST(:t AS regclass)")
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"
        return set(conn.execute(text(sql), {"t": table}).scalars())


def test_the_migration_keeps_the_claims_triggers_up_and_down(bare_engine: Engine) -> None:
    from alembic import command

    upgrade(bare_engine, "0015", locations=[])
    claims = _triggers(bare_engine, "claims")
    assert any("availability" in t for t in claims) and len(claims) >= 2, claims
    upgrade(bare_engine, "0016", locations=[])
    assert _triggers(bare_engine, "claims") == claims
    assert {f"services_catalog_{e}" for e in ("insert", "update", "delete")} \
        <= _triggers(bare_engine, "services")
    assert _triggers(bare_engine, "shops") == {"shops_catalog_update"}
    cfg = _alembic_config([])
    with bare_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0015")
    assert _triggers(bare_engine, "claims") == claims
    assert "catalog_versions" not in sa.inspect(bare_engine).get_table_names()
    for table in ("services", "experts", "expert_services", "weekly_hours",
                  "date_overrides", "shop_settings", "shops"):
        assert not {t for t in _triggers(bare_engine, table) if "catalog" in t}, table
    upgrade(bare_engine, "0016", locations=[])  # and up again
    assert _triggers(bare_engine, "claims") == claims


# --------------------------------------------------------------------------- services


@pytest.fixture
def other_app(ctx: Context) -> Iterator[Storefront]:
    """Another app over the same database, with caches of its own (another worker or
    instance), as the same shop."""
    other = bootstrap(make_config(ctx.config.database_url), clock=ctx.clock)
    yield Storefront(falcon.testing.TestClient(create_app(other)), other,
                     "alpha.myshopify.com")
    other.db.dispose()


def _other_admin(store: Storefront) -> Admin:
    return Admin(store.client, store.ctx, store.domain)


def test_another_apps_catalog_edit_is_in_the_very_next_answer(
        ctx: Context, admin: Admin, store: Storefront, other_app: Storefront) -> None:
    cat = make_catalog(admin, experts=2)
    edit = _other_admin(other_app)
    q = {"service": cat["service"], "start": "2026-12-01", "days": "2"}

    def slots() -> list[dict[str, Any]]:
        r = store.get("/availability", q)
        assert r.status_code == 200, r.text
        return list(r.json["slots"])

    first = slots()
    assert slots() == first and len(first) == 2 * 2 * 16  # served cached
    assert len(ctx.db.answers._entries) == 1

    assert edit("PATCH", f"/services/{cat['service']}",
                {"duration_minutes": 60}).status_code == 200
    assert len(slots()) == 2 * 2 * 8
    assert edit("PUT", f"/experts/{cat['experts'][0]}/schedule",
                {"weekly": {"tue": [["09:00", "10:00"]]}, "overrides": []}).status_code == 200
    assert {s["expert"] for s in slots()} == set(cat["experts"])
    assert len([s for s in slots() if s["expert"] == cat["experts"][0]]) == 1
    assert edit("PATCH", f"/experts/{cat['experts'][1]}", {"services": []}).status_code == 200
    assert {s["expert"] for s in slots()} == {cat["experts"][0]}
    assert edit("PATCH", "/settings", {"timezone": "America/New_York"}).status_code == 200
    assert store.get("/availability", q).json["shop_timezone"] == "America/New_York"


def _statements(ctx: Context, store: Storefront, q: dict[str, str], n: int) -> list[str]:
    seen: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        seen.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        for _ in range(n):
            assert store.get("/availability", q).status_code == 200
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", count)
    return seen


def test_a_cached_answer_costs_one_statement(ctx: Context, admin: Admin,
                                             store: Storefront) -> None:
    cat = make_catalog(admin, experts=2)
    q = {"service": cat["service"], "start": "2026-12-01", "days": "31"}
    ctx.db.cache.ttl = 60.0  # the provider's entries (unversioned) stay young throughout
    assert store.get("/availability", q).status_code == 200
    seen = _statements(ctx, store, q, 3)
    # The lookup alone, with no transaction around it on either database
    # (engine.store.db.Database.rows: autocommit on PostgreSQL, no BEGIN on SQLite).
    assert len(seen) == 3, seen
    assert all("catalog_versions" in s and "availability_versions" in s for s in seen), seen


def test_past_the_ttl_the_catalog_is_not_read_again(ctx: Context, admin: Admin,
                                                    store: Storefront) -> None:
    """The catalog entry is versioned (no age limit): once the TTL has passed, only the
    unversioned entries of the calendar provider are read again (its choice, its busy
    time), not the catalog, and the answer is not computed again."""
    cat = make_catalog(admin, experts=2)
    q = {"service": cat["service"], "start": "2026-12-01", "days": "31"}
    assert store.get("/availability", q).status_code == 200
    ctx.db.cache.ttl = 0.0  # every unversioned entry is too old from here on
    seen = _statements(ctx, store, q, 3)
    catalog = ("services", "experts", "weekly_hours", "date_overrides", "claims")

    def reads(statements: list[str]) -> set[str]:
        return {t for t in catalog for s in statements if f"FROM {t} " in s}

    assert not reads(seen), seen
    # (And it would: another process's edit moves the version.)
    with ctx.db.engine.begin() as conn:
        conn.execute(text("UPDATE services SET title = 'x' WHERE id = :s"),
                     {"s": cat["service"]})
    assert reads(_statements(ctx, store, q, 1)) >= {"services", "experts", "claims"}


def test_versions_not_read_with_the_shop_are_read_by_availability(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef) -> None:
    """A ShopRef without the lookup's readings (availability called from elsewhere), or
    with claim versions that do not cover the answer's experts (read before an expert
    was linked), makes availability read what is missing itself: a hold in between is
    in the next answer all the same."""
    from engine.services import availability
    from engine.services.shops import ClaimVersions

    cat = make_catalog(admin)
    query = availability.parse_query({"service": cat["service"], "start": "2026-12-01",
                                      "days": "1"})
    slot = b"2026-12-01T08:00:00Z"
    bare = ShopRef(shop.id, shop.domain, shop.timezone)
    unlinked = ShopRef(shop.id, shop.domain, shop.timezone, catalog_version=None,
                       claim_versions=ClaimVersions(cat["service"], frozenset(), ()))
    assert unlinked.claim_versions is not None
    assert unlinked.claim_versions.of([cat["expert"]]) is None
    assert unlinked == bare == shop  # readings are not identity
    for ref in (bare, unlinked):
        first = availability.availability_json(ctx.db, ctx.clock, ref, query)
        assert slot in first
        assert availability.availability_json(ctx.db, ctx.clock, ref, query) == first
        held = store.hold(cat["service"], cat["expert"], slot.decode())
        assert held.status_code == 201, held.text
        assert slot not in availability.availability_json(ctx.db, ctx.clock, ref, query)
        assert store.release(held.json["hold"]).status_code == 204
        assert availability.availability_json(ctx.db, ctx.clock, ref, query) == first


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite serializes writers
def test_concurrent_catalog_edits_of_one_shop_neither_deadlock_nor_miss_a_bump(
        ctx: Context, admin: Admin, shop: ShopRef) -> None:
    """PostgreSQL: admin edits of one shop's catalog running at once (services, experts
    and their links, schedules) all commit -- the version row is taken at the end of a
    transaction's first catalog statement, after that statement's own row locks -- and
    each moves the version."""
    import threading

    from engine.services import catalog, schedules

    assert ctx.db.dialect == "postgresql"
    cat = make_catalog(admin, experts=2)
    svc, experts = cat["service"], cat["experts"]
    start = ShopRef(shop.id, shop.domain, shop.timezone)

    def version() -> int:
        from engine.services.availability import catalog_version

        with ctx.db.read() as session:
            return catalog_version(session, start)

    before = version()
    rounds = 15
    edits = [
        lambda i: catalog.update_service(ctx.db, shop.id, svc,
                                         {"duration_minutes": 30 + i % 2 * 15}, "update"),
        lambda i: catalog.update_expert(ctx.db, shop.id, experts[0],
                                        {"name": f"E{i}", "services": [svc]}, "update"),
        lambda i: catalog.update_expert(ctx.db, shop.id, experts[1],
                                        {"services": [svc] if i % 2 else []}, "update"),
        lambda i: schedules.put_schedule(ctx.db, shop.id, experts[0], {
            "weekly": {"tue": [["09:00", f"1{i % 8}:00"]]},
            "overrides": [{"date": "2026-12-24", "windows": []}]}),
        lambda i: schedules.put_schedule(ctx.db, shop.id, experts[1], {
            "weekly": {"wed": [["08:00", "12:00"]]}, "overrides": []}),
    ]
    errors: list[Exception] = []
    gate = threading.Barrier(len(edits))

    def run(edit: Any) -> None:
        gate.wait()
        for i in range(rounds):
            try:
                edit(i)
            except Exception as exc:  # reported below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in edits]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert version() - before >= len(edits) * rounds
