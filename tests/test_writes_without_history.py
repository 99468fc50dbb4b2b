"""What a hold reads before it writes does not grow with the claims table (migration 0018,
up and down on both databases too).

Every writer of a claim first expires the expert's stale claims over its range
(engine.services.claims.expire_stale_holds; on PostgreSQL inside
``consultbook_hold_begin``), and a hold counts the visitor's live holds. With an
expert's long history (confirmed claims in the past) and many live holds of other
visitors in the table, both still read only a handful of rows:

* PostgreSQL: the pages each statement's execution read (auto_explain's buffers, the
  statements inside ``consultbook_hold_begin`` too), for a young table without
  statistics (what the planner guesses) and an analyzed one.
* SQLite: the plan (``EXPLAIN QUERY PLAN``) uses the indexes that bound the scan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from engine.bootstrap import Context
from engine.services.claims import expire_stale_holds, insert_last
from engine.services.holds import _HOLD_BEGIN, _LIVE_HOLDS, _visitor_key
from engine.services.shops import ShopRef
from engine.store.migrate import _alembic_config, upgrade
from engine.store.models import Claim
from tests.conftest import Admin, make_catalog

PAST = 1500  # the expert's confirmed history
LIVE = 300  # other visitors' live holds, each on its own future hour
BOUND = 12  # pages either read may touch: a few index levels and rows, not the table


def _fill(ctx: Context, shop: ShopRef, cat: dict[str, Any], analyze: bool) -> None:
    now = ctx.clock.now()
    rows: list[Claim] = []
    for k in range(PAST + LIVE):
        past = k < PAST
        start = (now - timedelta(days=30, hours=k) if past
                 else now + timedelta(days=2, hours=k - PAST))
        end = start + timedelta(minutes=30)
        rows.append(Claim(
            id=f"bk_wh{k:06d}", shop_id=shop.id, service_id=cat["service"],
            expert_id=cat["expert"], start_at=start, end_at=end, claim_start=start,
            claim_end=end, status="confirmed" if past else "held", sequence=0,
            visitor=None if past else f"customer:v{k}",
            expires_at=None if past else now + timedelta(minutes=10),
            created_at=now, updated_at=now))
    with ctx.db.write() as session:
        for claim in rows:
            insert_last(session, claim, now)
        if ctx.db.dialect == "postgresql":
            # Young: never analyzed (an earlier test's statistics would be another
            # table's); else analyzed.
            session.execute(text("ANALYZE claims" if analyze else
                                 "DELETE FROM pg_statistic WHERE starelid = 'claims'::regclass"))


def _plans(session: Any, run: Callable[[], object]) -> list[dict[str, Any]]:
    """The executed plans of every statement ``run`` sends, the statements inside a
    function included: auto_explain (``ANALYZE``, ``BUFFERS``), loaded into this session
    and reporting as notices."""
    raw = session.connection().connection.driver_connection
    for sql in ("LOAD 'auto_explain'", "SET LOCAL auto_explain.log_min_duration = 0",
                "SET LOCAL auto_explain.log_analyze = on",
                "SET LOCAL auto_explain.log_buffers = on",
                "SET LOCAL auto_explain.log_nested_statements = on",
                "SET LOCAL auto_explain.log_format = json",
                "SET LOCAL auto_explain.log_level = notice",
                "SET LOCAL client_min_messages = notice"):
        session.execute(text(sql))
    notices: list[str] = []

    def keep(diag: Any) -> None:
        notices.append(diag.message_primary or "")

    raw.add_notice_handler(keep)
    try:
        run()
        # (a statement's plan arrives once its portal closes: with the next one's answer)
        session.execute(text("SET LOCAL auto_explain.log_min_duration = -1"))
    finally:
        raw.remove_notice_handler(keep)
    plans = []
    for notice in notices:
        if "{" in notice:
            doc = json.loads(notice[notice.index("{"):])
            plans.append({**doc["Plan"], "Query Text": doc.get("Query Text", "")})
    return plans


def _pages(plan: dict[str, Any]) -> int:
    """Pages a statement's execution read (planning excluded), its children included."""
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))


def _claims_pages(plans: list[dict[str, Any]]) -> list[int]:
    """The pages of each statement that reads the claims table."""
    return [_pages(p) for p in plans if '"Relation Name": "claims"' in json.dumps(p)]


def _range(ctx: Context) -> tuple[Any, Any]:
    """A hold's range in the middle of the live holds (one of them overlaps it)."""
    lo = ctx.clock.now() + timedelta(days=2, hours=LIVE // 2)
    return lo, lo + timedelta(minutes=30)


@pytest.mark.parametrize("analyze", [False, True], ids=["young", "analyzed"])
def test_the_expiry_before_a_write_reads_the_range_not_the_history(
        ctx: Context, admin: Admin, shop: ShopRef, analyze: bool) -> None:
    cat = make_catalog(admin)
    _fill(ctx, shop, cat, analyze)
    lo, hi = _range(ctx)
    with ctx.db.write() as session:
        if ctx.db.dialect == "postgresql":
            now = ctx.clock.now()
            core = _plans(session, lambda: expire_stale_holds(
                session, now, expert_id=cat["expert"], start=lo, end=hi))
            function = _plans(session, lambda: session.execute(_HOLD_BEGIN, {
                "k": _visitor_key(shop.id, "customer:new"), "shop": shop.id,
                "visitor": "customer:new", "now": now, "expert": cat["expert"], "lo": lo,
                "hi": hi}))
            # The UPDATE, and the function's own UPDATE (its count: the next test).
            updates = [p for p in core + function
                       if p["Query Text"].lstrip().upper().startswith("UPDATE")]
            assert len(updates) == 2, [p["Query Text"] for p in core + function]
            assert max(_claims_pages(updates)) <= BOUND, [
                (" ".join(p["Query Text"].split())[:80], _pages(p)) for p in updates]
        else:
            plan = _sqlite_plan(ctx, session, lambda: expire_stale_holds(
                session, ctx.clock.now(), expert_id=cat["expert"], start=lo, end=hi))
            assert "ix_claims_expert_end" in plan and "claim_end>?" in plan, plan


def test_a_visitors_count_reads_that_visitors_holds_only(
        ctx: Context, admin: Admin, shop: ShopRef) -> None:
    """(Analyzed only: before its first statistics PostgreSQL may count through the
    index of all live holds, ``ix_claims_held_expiry`` -- the live holds, never the
    history, and only until autovacuum's first ANALYZE of the table.)"""
    cat = make_catalog(admin)
    _fill(ctx, shop, cat, analyze=True)
    params = {"shop": shop.id, "visitor": f"customer:v{PAST + 7}", "now": ctx.clock.now()}
    with ctx.db.write() as session:
        if ctx.db.dialect == "postgresql":
            counted: list[int] = []
            plans = _plans(session, lambda: counted.append(
                session.execute(_LIVE_HOLDS, params).scalar_one()))
            assert counted == [1]
            assert _claims_pages(plans) and max(_claims_pages(plans)) <= BOUND, json.dumps(plans)
        else:
            plan = _sqlite_plan(ctx, session, lambda: session.execute(_LIVE_HOLDS, params))
            assert "ix_claims_shop_visitor" in plan and "expires_at>?" in plan, plan


def test_the_overlap_is_half_open_on_both_databases(
        ctx: Context, admin: Admin, shop: ShopRef) -> None:
    """Three stale holds end to end, A, B, C: a range equal to B's expires B alone (A
    ends where it starts, C starts where it ends), one across C's start expires C, one
    inside A expires A."""
    cat = make_catalog(admin)
    now = ctx.clock.now()
    t = [now + timedelta(days=1, hours=k) for k in range(4)]
    with ctx.db.write() as session:
        for k, name in enumerate("ABC"):
            insert_last(session, Claim(
                id=f"bk_ov_{name}", shop_id=shop.id, service_id=cat["service"],
                expert_id=cat["expert"], start_at=t[k], end_at=t[k + 1],
                claim_start=t[k], claim_end=t[k + 1], status="held", sequence=0,
                visitor=f"customer:{name}", expires_at=now + timedelta(minutes=10),
                created_at=now, updated_at=now), now)
    ctx.clock.advance(11 * 60)  # all three are stale now
    minute = timedelta(minutes=1)
    for (lo, hi), expired in [((t[1], t[2]), {"B"}), ((t[2] - minute, t[2] + minute), {"C"}),
                              ((t[0] + minute, t[0] + 2 * minute), {"A"})]:
        with ctx.db.write() as session:
            assert expire_stale_holds(session, ctx.clock.now(), expert_id=cat["expert"],
                                      start=lo, end=hi) == 1
            status = dict(session.execute(text(
                "SELECT id, status FROM claims WHERE status = 'expired'")).all())
        assert {k.removeprefix("bk_ov_") for k in status} >= expired


def _sqlite_plan(ctx: Context, session: Any, run: Callable[[], object]) -> str:
    """SQLite's plan of the statement ``run`` sends, with the parameters it sent."""
    sent: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        sent.append((statement, parameters))

    event.listen(ctx.db.engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", capture)
    [(statement, parameters)] = [(q, a) for q, a in sent if "claims" in q]
    rows = session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                parameters).all()
    return " ".join(str(row[-1]) for row in rows).replace(" ", "")


def test_migration_0018_up_down_and_up_again(bare_engine: Engine) -> None:
    def indexes() -> dict[str, list[str | None]]:
        return {i["name"] or "": list(i["column_names"])
                for i in sa.inspect(bare_engine).get_indexes("claims")}

    def hold_begin() -> str:
        with bare_engine.connect() as conn:
            return str(conn.execute(text(
                "SELECT prosrc FROM pg_proc WHERE proname = 'consultbook_hold_begin'"))
                .scalar_one())

    pg = bare_engine.dialect.name == "postgresql"
    upgrade(bare_engine, "0017", locations=[])
    before = indexes()
    source = hold_begin() if pg else ""
    upgrade(bare_engine, "0018", locations=[])
    after = indexes()
    assert "ix_claims_expert_range" not in after
    assert after["ix_claims_shop_visitor"] == ["shop_id", "visitor", "expires_at"]
    if pg:
        assert "&&" in hold_begin()
    cfg = _alembic_config([])
    with bare_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0017")
    assert indexes() == before
    if pg:
        assert hold_begin() == source
    upgrade(bare_engine, "0018", locations=[])
    assert indexes() == after


@pytest.mark.parametrize("db_url", ["postgres", "pgbouncer"], indirect=True)
def test_holds_of_one_expert_take_turns_and_other_experts_do_not_wait(
        ctx: Context, admin: Admin, shop: ShopRef) -> None:
    """``consultbook_hold_begin`` given an expert takes that expert's lock after the
    visitor's: while one hold's statement of the expert is open, a second one -- another
    visitor -- waits for it (so two overlapping inserts never wait for each other's row
    and deadlock); a hold of another expert goes on at once. (A hold's statement is its
    own transaction; here the first is held open to watch the second wait.)"""
    cat = make_catalog(admin, experts=2)
    engine = create_engine(ctx.config.database_url, poolclass=NullPool)
    now = ctx.clock.now()
    lo, hi = _range(ctx)

    def begin(conn: Any, visitor: str, expert: str) -> None:
        conn.execute(_HOLD_BEGIN, {"k": _visitor_key(shop.id, visitor), "shop": shop.id,
                                   "visitor": visitor, "now": now, "expert": expert,
                                   "lo": lo, "hi": hi})

    try:
        with engine.connect() as first, engine.connect() as second:
            held = first.begin()
            begin(first, "customer:one", cat["experts"][0])
            other = second.begin()
            second.execute(text("SET LOCAL lock_timeout = '300ms'"))
            begin(second, "customer:two", cat["experts"][1])  # another expert: no wait
            other.rollback()
            other = second.begin()
            second.execute(text("SET LOCAL lock_timeout = '300ms'"))
            with pytest.raises(OperationalError, match="lock timeout"):
                begin(second, "customer:two", cat["experts"][0])
            other.rollback()
            held.commit()
            with second.begin():  # the first one's statement is over: at once
                second.execute(text("SET LOCAL lock_timeout = '300ms'"))
                begin(second, "customer:two", cat["experts"][0])
    finally:
        engine.dispose()
