"""Every statement of the storefront's and the webhooks' hot paths is served from
SQLAlchemy's compiled cache once warm.

A statement SQLAlchemy cannot make a cache key for (a multi-row ``VALUES``, a literal
that is not a bind parameter) is compiled again on every execution: the booking's
statement of a first ``orders/paid`` delivery was, two thirds of its CPU. Here the
booking flow runs twice with the same shapes (availability, holds, a paid order with
two lines and its duplicate, a pending order, a release, a cancellation); the second
time, every statement that goes through Core must be a cache hit. (Statements sent by
engine.store.db.Database.rows / transaction are compiled once by the store itself and
are not Core executions.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import default

from engine.bootstrap import Context
from tests.conftest import Admin, Storefront, make_catalog, order_payload


def _flow(store: Storefront, cat: dict[str, Any], n: int) -> None:
    svc, experts = cat["service"], cat["experts"]
    day = f"2026-12-0{1 + n}"
    r = store.get("/availability", {"service": svc, "start": day, "days": "3"})
    assert r.status_code == 200, r.text
    holds = []
    for k, expert in enumerate([experts[0], experts[1], experts[0], experts[1]]):
        r = store.hold(svc, expert, f"{day}T{8 + k // 2:02d}:00:00Z", customer=f"{n}{k}")
        assert r.status_code == 201, r.text
        holds.append(r.json["hold"])
    paid = order_payload(5000 + n, holds[:2])
    for _ in range(2):  # the first delivery and Shopify's duplicate of it
        r = store.webhook("orders/paid", paid, webhook_id=f"wh-paid-{n}")
        assert r.status_code == 200, r.text
    r = store.webhook("orders/create", order_payload(6000 + n, holds[2:3],
                                                     financial_status="pending"))
    assert r.status_code == 200, r.text
    assert store.release(holds[3]).status_code in (200, 204)
    r = store.webhook("orders/cancelled", order_payload(
        6000 + n, holds[2:3], financial_status="pending", cancelled=True,
        updated_at="2026-11-30T12:05:00Z"))
    assert r.status_code == 200, r.text


def test_warm_hot_paths_compile_nothing(ctx: Context, admin: Admin, store: Storefront
                                        ) -> None:
    cat = make_catalog(admin, experts=2)
    seen: list[tuple[Any, str]] = []

    def record(_conn: Any, _cursor: Any, statement: str, _params: Any, context: Any,
               _many: bool) -> None:
        if context is not None and getattr(context, "compiled", None) is not None:
            seen.append((context.cache_hit, statement))

    _flow(store, cat, 0)  # compiles what it needs
    event.listen(ctx.db.engine, "after_cursor_execute", record)
    try:
        _flow(store, cat, 1)
    finally:
        event.remove(ctx.db.engine, "after_cursor_execute", record)
    assert seen, "no Core statement ran"
    uncached = [" ".join(s.split())[:160] for hit, s in seen if hit is default.NO_CACHE_KEY]
    assert not uncached, uncached
    missed = [" ".join(s.split())[:160] for hit, s in seen if hit is not default.CACHE_HIT]
    assert not missed, missed
