"""Webhook ingest's fast paths (issue 14): deliveries of one shop are not serialized on
the shop row, an existing order is moved forward in SQL, and a live hold booked without
a savepoint falls back to the careful path when the database refuses the write."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import text

from engine.bootstrap import Context
from engine.services import orders, webhooks
from tests.conftest import Admin, Storefront, make_catalog, order_payload

TUE_9 = "2026-12-01T08:00:00Z"
TUE_10 = "2026-12-01T09:00:00Z"


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)


def _statuses(ctx: Context) -> list[tuple[str, str]]:
    with ctx.db.read() as session:
        rows = session.execute(text("SELECT order_id, status FROM claims "
                                    "WHERE order_id IS NOT NULL ORDER BY order_id")).all()
    return [(r.order_id, r.status) for r in rows]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_deliveries_of_one_shop_run_side_by_side(ctx: Context, store: Storefront,
                                                 cat: dict[str, Any],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery still inside its transaction (shop row locked) does not hold up another
    order's delivery of the same shop: the shop is locked FOR KEY SHARE, not FOR NO KEY
    UPDATE (which SQLAlchemy's key_share=True alone renders)."""
    h1 = store.hold(cat["service"], cat["expert"], TUE_9, customer="1").json["hold"]
    h2 = store.hold(cat["service"], cat["expert"], TUE_10, customer="2").json["hold"]
    inside, release = threading.Event(), threading.Event()
    real = webhooks.apply_order

    def slow(session: Any, shop: Any, event: Any, now: Any, **kw: Any) -> str:
        if event.order_id == "1":
            inside.set()
            assert release.wait(30)
        return real(session, shop, event, now, **kw)

    monkeypatch.setattr(webhooks, "apply_order", slow)
    first: dict[str, Any] = {}
    t = threading.Thread(target=lambda: first.update(
        r=store.webhook("orders/paid", order_payload(1, [h1]))))
    t.start()
    try:
        assert inside.wait(30)
        done = threading.Event()
        second: dict[str, Any] = {}

        def deliver_second() -> None:
            second["r"] = store.webhook("orders/paid", order_payload(2, [h2]))
            done.set()

        threading.Thread(target=deliver_second, daemon=True).start()
        assert done.wait(20), "the second delivery waited for the first one's transaction"
        assert second["r"].json == {"status": "processed"}
    finally:
        release.set()
        t.join(30)
    assert first["r"].json == {"status": "processed"}
    assert _statuses(ctx) == [("1", "confirmed"), ("2", "confirmed")]


def test_an_existing_order_moves_forward(ctx: Context, store: Storefront,
                                         cat: dict[str, Any]) -> None:
    """orders/create (pending) then orders/paid: the second delivery finds the order
    and its decided line (the general path) and confirms the booking; a stale create
    afterwards changes nothing."""
    h = store.hold(cat["service"], cat["expert"], TUE_9, customer="1").json["hold"]
    created = order_payload(7, [h], financial_status="pending")
    assert store.webhook("orders/create", created,
                         triggered_at="2026-11-30T10:00:00Z").json["status"] == "processed"
    assert _statuses(ctx) == [("7", "pending")]
    assert store.webhook("orders/paid", order_payload(7, [h]),
                         triggered_at="2026-11-30T10:05:00Z").json["status"] == "processed"
    assert store.webhook("orders/create", created,
                         triggered_at="2026-11-30T10:00:00Z").json["status"] == "processed"
    assert _statuses(ctx) == [("7", "confirmed")]
    with ctx.db.read() as session:
        row = session.execute(text("SELECT state, currency, last_event_at FROM orders "
                                   "WHERE order_id = '7'")).one()
    assert row.state == "paid" and row.currency == "EUR"
    assert str(row.last_event_at).startswith("2026-11-30 10:05")


def test_a_refused_fast_booking_is_run_again_carefully(
        ctx: Context, store: Storefront, cat: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the database refuse the savepoint-free booking of a live hold (here: it is
    made to name a session that does not exist), the delivery's transaction is rolled
    back and run again through write_claim, which books it: one booking, one outbox row,
    the webhook id recorded once."""
    h = store.hold(cat["service"], cat["expert"], TUE_9, customer="1").json["hold"]
    real = orders._write_booking
    calls: list[str] = []

    def broken(conn: Any, hold_id: str, changes: dict[str, Any], *rows: Any) -> None:
        calls.append(hold_id)
        real(conn, hold_id, {**changes, "session_key": "no-such-session"}, *rows)

    monkeypatch.setattr(orders, "_write_booking", broken)
    r = store.webhook("orders/paid", order_payload(9, [h]), webhook_id="wh-careful")
    assert r.status_code == 200 and r.json == {"status": "processed"}, r.text
    assert calls == [h]  # the second run did not take the fast path
    assert _statuses(ctx) == [("9", "confirmed")]
    with ctx.db.read() as session:
        assert session.execute(text("SELECT count(*) FROM outbox WHERE booking_id = :h "
                                    "AND kind = 'booking.confirmed'"), {"h": h}).scalar() == 1
        assert session.execute(text("SELECT count(*) FROM webhook_deliveries "
                                    "WHERE webhook_id = 'wh-careful'")).scalar() == 1
        used = session.execute(text("SELECT seats_used FROM claim_sessions c JOIN claims k "
                                    "ON k.session_key = c.key WHERE k.id = :h"),
                               {"h": h}).scalars().all()
    assert used == [1]
