"""Helpers of the capacity suite: set a service's or an expert's capacity columns, book a
hold through Shopify's webhook, and check that the database's seat and limit counters
are exact."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select, update

from engine.bootstrap import Context
from engine.store.models import (
    LIVE_STATUSES,
    CapacityCounter,
    Claim,
    ClaimSession,
    Expert,
    Service,
)
from tests.conftest import Storefront, order_payload


def set_service(ctx: Context, service_id: str, **values: Any) -> None:
    """Write a service's columns (``seats``, ``limits``, ``assignment``, ``questions``)
    straight into the database; the write clears this process's read cache."""
    with ctx.db.write() as s:
        s.execute(update(Service).where(Service.id == service_id).values(**values))


def set_expert(ctx: Context, expert_id: str, **values: Any) -> None:
    """Write an expert's columns (``limits``, ``priority``, ``weight``, ``timezone``)."""
    with ctx.db.write() as s:
        s.execute(update(Expert).where(Expert.id == expert_id).values(**values))


def book(store: Storefront, hold: str, order_id: int, *, quantity: int = 1,
         financial_status: str = "paid", price: str = "50.00") -> Any:
    """Shopify's ``orders/create`` for one line buying ``quantity`` units of the hold."""
    r = store.webhook("orders/create", order_payload(order_id, [hold], quantity=quantity,
                                                     financial_status=financial_status,
                                                     price=price))
    assert r.status_code == 200, r.text
    return r


def cancel(store: Storefront, hold: str, order_id: int) -> None:
    r = store.webhook("orders/cancelled", order_payload(order_id, [hold], cancelled=True))
    assert r.status_code == 200, r.text


def live_claims(ctx: Context, **where: Any) -> list[Claim]:
    with ctx.db.read() as s:
        q = select(Claim).where(Claim.status.in_(LIVE_STATUSES))
        for name, value in where.items():
            q = q.where(getattr(Claim, name) == value)
        return list(s.scalars(q.order_by(Claim.start_at, Claim.id)))


def seats_used(ctx: Context, session_key: str) -> int:
    with ctx.db.read() as s:
        return int(s.scalar(select(ClaimSession.seats_used)
                            .where(ClaimSession.key == session_key)) or 0)


def counter(ctx: Context, expert_id: str, scope: str, period: str) -> tuple[int, int | None]:
    """(used, cap) of one counter row; (0, None) when it does not exist."""
    with ctx.db.read() as s:
        row = s.execute(select(CapacityCounter.used, CapacityCounter.cap)
                        .where(CapacityCounter.expert_id == expert_id,
                               CapacityCounter.scope == scope,
                               CapacityCounter.period == period)).first()
    return (int(row.used), row.cap) if row is not None else (0, None)


def assert_counters_exact(ctx: Context) -> None:
    """What the triggers keep equals what the rows say, and no cap is exceeded:

    * every session's ``seats_used`` is the sum of its live claims' ``seats``, within
      ``seats_max``, and every live claim belongs to a session;
    * every counter's ``used`` is the number of that expert's sessions with a seat in
      that period (for the service's scope and for ``*``), within ``cap``."""
    with ctx.db.read() as s:
        sums = dict(s.execute(select(Claim.session_key, func.sum(Claim.seats))
                              .where(Claim.status.in_(LIVE_STATUSES))
                              .group_by(Claim.session_key)).all())
        sessions = s.execute(select(ClaimSession)).scalars().all()
        counters = s.execute(select(CapacityCounter)).scalars().all()
    by_key = {x.key: x for x in sessions}
    assert set(sums) <= set(by_key), set(sums) - set(by_key)
    for x in sessions:
        assert x.seats_used == int(sums.get(x.key, 0)), (x.key, x.seats_used, sums.get(x.key))
        assert 0 <= x.seats_used <= x.seats_max, (x.key, x.seats_used, x.seats_max)
    expected: Counter[tuple[str, str, str]] = Counter()
    for x in sessions:
        if x.seats_used > 0:
            for scope in (x.service_id, "*"):
                for period in (f"D{x.day_key}", f"W{x.week_key}", f"M{x.month_key}"):
                    expected[(x.expert_id, scope, period)] += 1
    rows = {(c.expert_id, c.scope, c.period): c for c in counters}
    assert set(expected) <= set(rows), set(expected) - set(rows)
    for key, c in rows.items():
        assert c.used == expected.get(key, 0), (key, c.used, expected.get(key, 0))
        assert c.cap is None or c.used <= c.cap, (key, c.used, c.cap)
