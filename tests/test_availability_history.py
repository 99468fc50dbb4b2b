"""Availability's cost does not grow with an expert's history (issue 14).

The busy query reads the claims of the window through ``ix_claims_expert_end``
(expert, claim_end > the window's start: migration 0015): the expert's past claims are
never visited. Shown by the plan (SQLite: ``EXPLAIN QUERY PLAN``; PostgreSQL: ``EXPLAIN
ANALYZE``, rows the index scan returned and removed) with 1,500 past claims.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import event, text

from engine.bootstrap import Context
from engine.services import availability
from engine.services.availability import _BUSY_UNTIL
from engine.services.claims import insert_last
from engine.services.shops import ShopRef
from engine.store.models import Claim
from tests.conftest import Admin, make_catalog

PAST = 1500
FUTURE = 5


def _claims(ctx: Context, shop: ShopRef, cat: dict[str, Any]) -> None:
    now = ctx.clock.now()
    rows: list[Claim] = []
    for k in range(PAST + FUTURE):
        # The past: one every hour back from a year ago; the future: next week's.
        start = (now - timedelta(days=365, hours=k) if k < PAST
                 else now + timedelta(days=1, hours=k - PAST))
        end = start + timedelta(minutes=30)
        rows.append(Claim(id=f"bk_hist{k:06d}", shop_id=shop.id, service_id=cat["service"],
                          expert_id=cat["expert"], start_at=start, end_at=end,
                          claim_start=start, claim_end=end, status="confirmed", sequence=0,
                          created_at=now, updated_at=now))
    with ctx.db.write() as session:
        for claim in rows:  # with its session, as every writer makes it
            insert_last(session, claim, now)
        if ctx.db.dialect == "postgresql":
            session.execute(text("ANALYZE claims"))


def _params(ctx: Context, cat: dict[str, Any]) -> dict[str, Any]:
    now = ctx.clock.now()
    return {"ids": [cat["expert"]], "lo": now, "hi": now + timedelta(days=31), "now": now}


def _walk(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", ()):
        out.extend(_walk(child))
    return out


def test_the_busy_query_reads_the_window_not_the_history(ctx: Context, admin: Admin,
                                                         shop: ShopRef) -> None:
    cat = make_catalog(admin)
    _claims(ctx, shop, cat)
    params = _params(ctx, cat)
    ran: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        ran.append((statement, parameters))

    with ctx.db.read() as session:
        conn = session.connection()
        event.listen(ctx.db.engine, "before_cursor_execute", capture)
        try:
            rows = conn.execute(_BUSY_UNTIL, params).all()
        finally:
            event.remove(ctx.db.engine, "before_cursor_execute", capture)
        assert len(rows) == FUTURE
        statement, parameters = ran[-1]
        if ctx.db.dialect == "postgresql":
            plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}",
                                        parameters).scalar()
            doc = plan if isinstance(plan, list) else json.loads(str(plan))
            nodes = _walk(doc[0]["Plan"])
            scans = [n for n in nodes if "Scan" in n["Node Type"]]
            assert scans, nodes
            assert all(n["Node Type"] != "Seq Scan" for n in scans), nodes
            visited = sum(n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0)
                          + n.get("Rows Removed by Index Recheck", 0) for n in scans)
            assert visited <= FUTURE * 2, nodes  # not the 1,500 past claims
        else:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            detail = " ".join(str(row[-1]) for row in plan)
            assert "ix_claims_expert_end" in detail, detail
            assert "claim_end>?" in detail.replace(" ", ""), detail


def test_availability_is_the_same_with_and_without_history(ctx: Context, admin: Admin,
                                                           shop: ShopRef) -> None:
    cat = make_catalog(admin)
    query = availability.AvailabilityQuery(cat["service"], ctx.clock.now().date(), 31)
    before = availability.availability(ctx.db, ctx.clock, shop, query)["slots"]
    _claims(ctx, shop, cat)
    after = availability.availability(ctx.db, ctx.clock, shop, query)["slots"]
    # The FUTURE claims take their slots (weekday 09:00-17:00 Berlin ones), nothing else.
    future = {(ctx.clock.now() + timedelta(days=1, hours=k)).astimezone(UTC)
              .strftime("%Y-%m-%dT%H:%M:%SZ") for k in range(FUTURE)}
    assert [s for s in before if s["start"] not in future] == after
    assert len(after) < len(before)
