"""A new order's delivery is written in Core (engine.services.orders._book_new_line,
issue 14); the same delivery through the ORM path (``careful``) must leave exactly the
same rows: the booking's columns, its outbox rows (confirmation, tag), its reminders
(one skipped: due before now) and its session's seats -- paid and pending, on SQLite and
PostgreSQL. And the fast path is the one taken: no careful rerun, no ORM shop load."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import text

from engine.bootstrap import Context
from engine.services import orders, webhooks
from tests.conftest import Admin, Storefront, make_catalog, order_payload

TUE_9 = "2026-12-01T08:00:00Z"  # 20 hours after the test clock's now
TUE_10 = "2026-12-01T09:00:00Z"

CLAIM = ("status", "expires_at", "order_id", "line_item_id", "customer_id",
         "customer_name", "customer_email", "line_price", "line_quantity", "seats",
         "currency", "confirmed_at", "updated_at", "sequence", "session_key")


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)


def _rows(ctx: Context, hold: str) -> dict[str, Any]:
    """What a booking wrote, with its own ids (order, line, session) masked."""
    with ctx.db.read() as session:
        claim = session.execute(text(f"SELECT {', '.join(CLAIM)} FROM claims "
                                     "WHERE id = :h"), {"h": hold}).one()._asdict()
        order = claim["order_id"]
        outbox = session.execute(text(
            "SELECT kind, payload, status, attempts, available_at, created_at, locked_until, "
            "last_error, done_at, lease_owner FROM outbox WHERE booking_id = :h "
            "ORDER BY id"), {"h": hold}).all()
        reminders = session.execute(text(
            "SELECT r.offset_minutes, r.status, r.attempts, r.claimed_at, r.sent_at, "
            "r.last_error, c.start_at, r.due_at FROM reminders r JOIN claims c "
            "ON c.id = r.booking_id WHERE r.booking_id = :h ORDER BY r.offset_minutes"),
            {"h": hold}).all()
        seats = session.execute(text("SELECT s.seats_used FROM claim_sessions s JOIN claims c "
                                     "ON c.session_key = s.key WHERE c.id = :h"),
                                {"h": hold}).scalars().all()
    claim["order_id"] = claim["line_item_id"] = claim["session_key"] = "masked"
    boxes = []
    for row in outbox:
        payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
        if payload.get("order_id") == order:
            payload = {**payload, "order_id": "masked"}
        boxes.append((row.kind, payload, *row[2:]))
    due = [(r.offset_minutes, r.status, r.attempts, r.claimed_at, r.sent_at, r.last_error,
            str(r.due_at) if r.due_at is not None else None) for r in reminders]
    starts = {str(r.start_at) for r in reminders}
    return {"claim": claim, "outbox": boxes, "reminders": [d[:6] for d in due],
            "reminders_due_before_start": len(starts) == 1 and all(d[6] < min(starts)
                                                                  for d in due),
            "seats": seats}


def _careful(monkeypatch: pytest.MonkeyPatch) -> None:
    real = webhooks.apply_order

    def careful(session: Any, shop: Any, event: Any, now: Any, **_kw: Any) -> str:
        return real(session, shop, event, now, careful=True)

    monkeypatch.setattr(webhooks, "apply_order", careful)


@pytest.mark.parametrize("financial_status", ["paid", "pending"])
def test_the_core_path_writes_what_the_orm_path_writes(
        ctx: Context, store: Storefront, cat: dict[str, Any], financial_status: str,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    topic = "orders/paid" if financial_status == "paid" else "orders/create"
    fast_hold = store.hold(cat["service"], cat["expert"], TUE_9, customer="1").json["hold"]
    slow_hold = store.hold(cat["service"], cat["expert"], TUE_10, customer="2").json["hold"]
    declined: list[str] = []
    real_book = orders._book_new_line

    def book(*args: Any) -> bool:
        done = real_book(*args)
        if not done:
            declined.append(args[3].id)
        return done

    monkeypatch.setattr(orders, "_book_new_line", book)
    with caplog.at_level(logging.WARNING, logger="consultbook.webhooks"):
        r = store.webhook(topic, order_payload(31, [fast_hold],
                                               financial_status=financial_status))
    assert r.status_code == 200 and r.json == {"status": "processed"}, r.text
    assert not declined and "carefully" not in caplog.text  # the Core path booked it
    _careful(monkeypatch)
    r = store.webhook(topic, order_payload(32, [slow_hold], financial_status=financial_status))
    assert r.status_code == 200 and r.json == {"status": "processed"}, r.text
    fast, slow = _rows(ctx, fast_hold), _rows(ctx, slow_hold)
    assert fast == slow
    want = "confirmed" if financial_status == "paid" else "pending"
    assert fast["claim"]["status"] == want and fast["seats"] == [1]
    if financial_status == "paid":
        assert [b[0] for b in fast["outbox"]] == ["booking.confirmed", "order.tag"]
        assert fast["reminders"] == [(60, "pending", 0, None, None, None),
                                     (1440, "skipped", 0, None, None, None)]
        assert fast["reminders_due_before_start"]
    else:
        assert fast["outbox"] == [] and fast["reminders"] == []
        assert fast["claim"]["expires_at"] is not None


def test_a_line_the_core_path_declines_is_decided_by_the_orm_path(
        ctx: Context, store: Storefront, cat: dict[str, Any]) -> None:
    """One order, three lines: a live hold (Core), a hold bought with more units than its
    seats (the extra units' refund entry: ORM), an unknown hold (refunded hold_unknown:
    ORM). Each line decided once; a redelivery under a new webhook id changes nothing."""
    live = store.hold(cat["service"], cat["expert"], TUE_9, customer="1").json["hold"]
    extra = store.hold(cat["service"], cat["expert"], TUE_10, customer="2").json["hold"]
    payload = order_payload(41, [live, extra, "bk_unknown"])
    payload["line_items"][1]["quantity"] = 3
    for webhook_id in ("wh-mixed-1", "wh-mixed-2"):
        r = store.webhook("orders/paid", payload, webhook_id=webhook_id)
        assert r.status_code == 200 and r.json == {"status": "processed"}, r.text
    with ctx.db.read() as session:
        booked = session.execute(text("SELECT id, status, line_quantity FROM claims WHERE "
                                      "order_id = '41' ORDER BY start_at")).all()
        refunds = session.execute(text("SELECT hold_id, kind, reason, quantity FROM refunds "
                                       "WHERE order_id = '41' ORDER BY kind, hold_id")).all()
        confirmations = session.execute(text(
            "SELECT booking_id FROM outbox WHERE kind = 'booking.confirmed' "
            "ORDER BY booking_id")).scalars().all()
    assert [(b.id, b.status, b.line_quantity) for b in booked] == [
        (live, "confirmed", 1), (extra, "confirmed", 1)]
    assert [tuple(r) for r in refunds] == [(extra, "extra", "extra_quantity", 2),
                                          ("bk_unknown", "line", "hold_unknown", 1)]
    assert confirmations == sorted([live, extra])
