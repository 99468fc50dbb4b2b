"""Migration 0017: PostgreSQL's capacity triggers make the rows they count on, and the
visitor's lock and count are one call (engine.services.holds, capacity).

* The period keys the trigger writes (day, ISO week, month in the expert's zone, else
  the shop's) are the ones engine.domain.capacity.periods_of gives, across zones, DST
  changes and year ends -- availability reads the counters by those keys.
* A session's capacity and a counter's cap come from the catalog rows as the claim is
  written: raising the seats lets the session take more, lowering them keeps what is
  taken and refuses more (and confirming a hold of a session over its lowered capacity
  still works), a limit added later caps the next session.
* ``consultbook_hold_begin`` counts after it locks: a second transaction of the same
  visitor waits, then sees the first one's hold; it expires the expert's stale claims
  over the range it is given, and only those.
* Up and down: 0016 <-> 0017 on both databases (SQLite: nothing changes).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from engine.bootstrap import Context
from engine.domain.capacity import periods_of
from engine.store.migrate import _alembic_config, upgrade
from tests.conftest import Admin, Storefront, make_catalog

TUE_9 = "2026-12-01T08:00:00Z"


#: PostgreSQL's triggers only (SQLite keeps 0013's; the application prepares the rows
#: there): directly and through PgBouncer, never a skipped SQLite variant.
postgres_only = pytest.mark.parametrize("db_url", ["postgres", "pgbouncer"], indirect=True)


@postgres_only
def test_trigger_period_keys_are_the_applications(ctx: Context, admin: Admin) -> None:
    cat = make_catalog(admin)
    zones = ["Europe/Berlin", "America/New_York", "Pacific/Auckland", "Asia/Kolkata",
             "Pacific/Kiritimati", "America/St_Johns", "UTC", ""]
    instants = [datetime(2026, 12, 31, 23, 30, tzinfo=UTC),  # 2027 in Berlin: 2026-W53
                datetime(2027, 1, 3, 23, 0, tzinfo=UTC),
                datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # DST edges
                datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
                datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
                datetime(2027, 12, 31, 12, 0, tzinfo=UTC),
                datetime(2026, 2, 28, 23, 59, tzinfo=UTC)]
    engine = create_engine(ctx.config.database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            shop_tz = conn.execute(text("SELECT timezone FROM shops")).scalar_one()
            n = 0
            for zone in zones:
                conn.execute(text("UPDATE experts SET timezone = :z WHERE id = :e"),
                             {"z": zone or None, "e": cat["expert"]})
                for at in instants:
                    n += 1
                    conn.execute(text(
                        "INSERT INTO claims (id, shop_id, service_id, expert_id, start_at, "
                        "end_at, claim_start, claim_end, status, expires_at, sequence, "
                        "created_at, updated_at, session_key, seats) SELECT :id, shop_id, "
                        "id, :e, :at, :end, :at, :end, 'cancelled', NULL, 0, :at, :at, :key, 1 "
                        "FROM services WHERE id = :s"),
                        {"id": f"c{n}", "e": cat["expert"], "s": cat["service"], "at": at,
                         "end": at + timedelta(minutes=1), "key": f"k{n}"})
                    # Made live: the session is made now, in the zone of now.
                    conn.execute(text("UPDATE claims SET status = 'confirmed' WHERE id = :id"),
                                 {"id": f"c{n}"})
                    row = conn.execute(text(
                        "SELECT day_key, week_key, month_key FROM claim_sessions "
                        "WHERE key = :k"), {"k": f"k{n}"}).one()
                    p = periods_of(at, ZoneInfo(zone or shop_tz))
                    assert tuple(row) == (p.day, p.week, p.month), (zone, at)
                    # Out again, so the next one overlaps nothing.
                    conn.execute(text("UPDATE claims SET status = 'cancelled' WHERE id = :id"),
                                 {"id": f"c{n}"})
    finally:
        engine.dispose()


def _session(ctx: Context) -> tuple[int, int]:
    with ctx.db.read() as session:
        row = session.execute(text("SELECT seats_used, seats_max FROM claim_sessions")).one()
    return int(row[0]), int(row[1])


def test_capacity_comes_from_the_catalog_as_the_claim_is_written(
        ctx: Context, admin: Admin, store: Storefront) -> None:
    cat = make_catalog(admin)
    svc, exp = cat["service"], cat["expert"]
    assert admin("PATCH", f"/services/{svc}", {"seats": 2}).status_code == 200
    h1 = store.hold(svc, exp, TUE_9, customer="1")
    assert h1.status_code == 201, h1.text
    assert store.hold(svc, exp, TUE_9, customer="2").status_code == 201
    assert _session(ctx) == (2, 2)
    full = store.hold(svc, exp, TUE_9, customer="3")
    assert full.status_code == 409 and full.json["error"]["code"] == "slot_unavailable"
    # Raised: the session takes one more.
    assert admin("PATCH", f"/services/{svc}", {"seats": 3}).status_code == 200
    assert store.hold(svc, exp, TUE_9, customer="3").status_code == 201
    assert _session(ctx) == (3, 3)
    # Lowered below what is taken: what is taken stays, nothing more fits ...
    assert admin("PATCH", f"/services/{svc}", {"seats": 1}).status_code == 200
    assert store.hold(svc, exp, TUE_9, customer="4").status_code == 409
    assert _session(ctx) == (3, 3)
    # ... and a hold of it still becomes a booking (its seats stay in the session).
    with ctx.db.write() as session:
        session.execute(text("UPDATE claims SET status = 'confirmed' WHERE id = :id"),
                        {"id": h1.json["hold"]})
    assert _session(ctx)[0] == 3


def test_a_limit_set_later_caps_the_next_session(ctx: Context, admin: Admin,
                                                 store: Storefront) -> None:
    cat = make_catalog(admin)
    svc, exp = cat["service"], cat["expert"]
    assert store.hold(svc, exp, TUE_9, customer="1").status_code == 201
    assert admin("PATCH", f"/experts/{exp}", {"limits": {"day": 2}}).status_code == 200
    assert store.hold(svc, exp, "2026-12-01T09:00:00Z", customer="2").status_code == 201
    third = store.hold(svc, exp, "2026-12-01T10:00:00Z", customer="3")
    assert third.status_code == 409 and third.json["error"]["code"] == "limit_reached"
    # Lowered below what is used: what is used stays (the cap becomes 2), the next day
    # has its own counter.
    assert admin("PATCH", f"/experts/{exp}", {"limits": {"day": 1}}).status_code == 200
    assert store.hold(svc, exp, "2026-12-01T11:00:00Z", customer="4").status_code == 409
    assert store.hold(svc, exp, "2026-12-02T08:00:00Z", customer="4").status_code == 201
    with ctx.db.read() as session:
        caps = dict(session.execute(text(
            "SELECT period, cap FROM capacity_counters WHERE scope = '*' "
            "AND period LIKE 'D%'")).all())
    assert caps == {"D2026-12-01": 2, "D2026-12-02": 1}


@postgres_only
def test_the_visitor_count_waits_for_the_visitors_other_transaction(ctx: Context,
                                                                     admin: Admin) -> None:
    cat = make_catalog(admin)
    engine = create_engine(ctx.config.database_url, poolclass=NullPool)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    count = text("SELECT consultbook_hold_begin(42, :shop, 'v', :now, NULL, NULL, NULL)")
    seen: list[int] = []
    try:
        with engine.connect() as conn:
            shop = conn.execute(text("SELECT id FROM shops")).scalar_one()
        first = engine.connect()
        tx = first.begin()
        assert first.execute(count, {"shop": shop, "now": now}).scalar_one() == 0
        first.execute(text(
            "INSERT INTO claims (id, shop_id, service_id, expert_id, start_at, end_at, "
            "claim_start, claim_end, status, expires_at, sequence, created_at, updated_at, "
            "session_key, seats, visitor) VALUES ('h1', :shop, :s, :e, :a, :b, :a, :b, "
            "'held', :x, 0, :now, :now, :k, 1, 'v')"),
            {"shop": shop, "s": cat["service"], "e": cat["expert"],
             "a": datetime(2026, 12, 1, 8, tzinfo=UTC), "b": datetime(2026, 12, 1, 9,
                                                                      tzinfo=UTC),
             "x": now + timedelta(minutes=10), "now": now, "k": "k1"})

        def second() -> None:
            with engine.begin() as conn:
                seen.append(int(conn.execute(count, {"shop": shop, "now": now}).scalar_one()))

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        assert not seen  # waiting on the first transaction's lock
        tx.commit()
        first.close()
        t.join(10)
        assert seen == [1]  # counted after the lock: the first one's hold is seen
    finally:
        engine.dispose()


def _functions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT proname FROM pg_proc WHERE proname LIKE 'consultbook_%'")).scalars())


def _claim_seats_source(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text(
            "SELECT prosrc FROM pg_proc WHERE proname = 'consultbook_claim_seats'")
        ).scalar_one())


def test_the_migration_up_and_down(bare_engine: Engine) -> None:
    from alembic import command

    upgrade(bare_engine, "0016", locations=[])
    pg = bare_engine.dialect.name == "postgresql"
    before = sa.inspect(bare_engine).get_table_names()
    if pg:
        functions, source = _functions(bare_engine), _claim_seats_source(bare_engine)
        assert "consultbook_hold_begin" not in functions
    upgrade(bare_engine, "0017", locations=[])
    assert sa.inspect(bare_engine).get_table_names() == before
    if pg:
        assert "consultbook_hold_begin" in _functions(bare_engine)
        assert "INSERT INTO claim_sessions" in _claim_seats_source(bare_engine)
    cfg = _alembic_config([])
    with bare_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0016")
    if pg:
        assert _functions(bare_engine) == functions
        assert _claim_seats_source(bare_engine) == source
    upgrade(bare_engine, "0017", locations=[])  # and up again
    if pg:
        assert "consultbook_hold_begin" in _functions(bare_engine)


def test_a_busy_block_that_day_refuses_only_the_holds_it_overlaps(
        ctx: Context, admin: Admin, store: Storefront) -> None:
    """A hold asks the calendar provider about its whole UTC day (one cached question per
    expert and day); only what overlaps the hold's own range refuses it -- and a block
    added by this process is seen by the very next hold (the write clears the cache)."""
    cat = make_catalog(admin)
    svc, exp = cat["service"], cat["expert"]
    assert store.hold(svc, exp, TUE_9, customer="1").status_code == 201  # question cached
    block = admin("POST", "/calendar/busy", {"expert": exp, "start": "2026-12-01T09:00:00Z",
                                             "end": "2026-12-01T10:00:00Z"})
    assert block.status_code == 201, block.text
    before = store.hold(svc, exp, "2026-12-01T08:30:00Z", customer="2")  # ends at 09:00
    assert before.status_code == 201, before.text
    for n, start in enumerate(("2026-12-01T09:00:00Z", "2026-12-01T09:30:00Z")):
        r = store.hold(svc, exp, start, customer=f"b{n}")
        assert r.status_code == 409 and r.json["error"]["code"] == "slot_unavailable", r.text
    assert store.hold(svc, exp, "2026-12-01T10:00:00Z", customer="3").status_code == 201


@postgres_only
def test_hold_begin_expires_the_experts_stale_claims_in_its_range(ctx: Context,
                                                                  admin: Admin) -> None:
    cat = make_catalog(admin, experts=2)
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    t = datetime(2026, 12, 1, 8, tzinfo=UTC)
    engine = create_engine(ctx.config.database_url, poolclass=NullPool)
    rows = [("in", 0, "held", now - timedelta(seconds=1), 0),  # stale, in range: expired
            ("live", 0, "held", now + timedelta(minutes=5), 60),  # not stale
            ("after", 0, "held", now - timedelta(seconds=1), 120),  # out of range
            ("other", 1, "pending", now - timedelta(seconds=1), 0),  # another expert
            ("pend", 0, "pending", now, 30)]  # expires_at <= now: expired
    try:
        with engine.begin() as conn:
            shop = conn.execute(text("SELECT id FROM shops")).scalar_one()
            for id_, expert, status, expires, minutes in rows:
                a = t + timedelta(minutes=minutes)
                conn.execute(text(
                    "INSERT INTO claims (id, shop_id, service_id, expert_id, start_at, "
                    "end_at, claim_start, claim_end, status, expires_at, sequence, "
                    "created_at, updated_at, session_key, seats) VALUES (:id, :shop, :s, :e, "
                    ":a, :b, :a, :b, :st, :x, 0, :now, :now, :id, 1)"),
                    {"id": id_, "shop": shop, "s": cat["service"],
                     "e": cat["experts"][expert], "a": a, "b": a + timedelta(minutes=30),
                     "st": status, "x": expires, "now": now - timedelta(hours=1)})
            assert conn.execute(text(
                "SELECT consultbook_hold_begin(7, :shop, 'v', :now, :e, :lo, :hi)"),
                {"shop": shop, "now": now, "e": cat["experts"][0], "lo": t,
                 "hi": t + timedelta(minutes=90)}).scalar_one() == 0
            status = dict(conn.execute(text("SELECT id, status FROM claims")).all())
    finally:
        engine.dispose()
    assert status == {"in": "expired", "live": "held", "after": "held", "other": "pending",
                      "pend": "expired"}
