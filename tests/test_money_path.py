"""What was bought must be what was held (issue 9), end to end through POST /webhooks with
Shopify's HMAC, on SQLite and PostgreSQL: the product/variant check, extra units, late
lines, passed starts, pending bookings that lapse, auto-refund only for paid orders, and
the refund of a merchant's cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.services.claims import sweep
from engine.store.models import Claim, OutboxItem, Refund
from tests.conftest import Admin, Storefront, make_catalog, order_payload

TUE_9 = "2026-12-01T08:00:00Z"  # Tuesday 09:00 Berlin; the clock starts Monday 12:00Z
TUE_930 = "2026-12-01T08:30:00Z"
HOUR = 3600


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)  # sells variant 4242


def hold(store: Storefront, cat: dict[str, Any], start: str = TUE_9, ip: str = "192.0.2.1"
         ) -> str:
    r = store.hold(cat["service"], cat["expert"], start, ip=ip)
    assert r.status_code == 201, r.text
    return str(r.json["hold"])


def deliver(store: Storefront, topic: str, payload: dict[str, Any], **kw: Any) -> None:
    r = store.webhook(topic, payload, **kw)
    assert r.status_code == 200, r.text


def bookings(admin: Admin) -> list[dict[str, Any]]:
    r = admin("GET", "/bookings")
    assert r.status_code == 200, r.text
    return list(r.json["bookings"])


def refunds(admin: Admin) -> list[tuple[str, str, str, int | None]]:
    """(reason, amount, line item, quantity) of every refund-log entry."""
    r = admin("GET", "/refunds")
    assert r.status_code == 200, r.text
    return sorted((e["reason"], e["amount"], e["line_item_id"], e["quantity"])
                  for e in r.json["refunds"])


def free(store: Storefront, cat: dict[str, Any], start: str = TUE_9) -> bool:
    r = store.get("/availability", {"service": cat["service"], "start": start[:10],
                                    "days": "1"})
    assert r.status_code == 200, r.text
    return start in [s["start"] for s in r.json["slots"]]


def shopify_refunds_queued(ctx: Any) -> int:
    with ctx.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(OutboxItem)
                            .where(OutboxItem.kind == "order.refund")) or 0)


def redeliver_all(store: Storefront, order_id: int, holds: list[str], **kw: Any) -> None:
    """Every topic again, each twice: once with a repeated webhook id, once with a new one."""
    for topic in ("orders/create", "orders/paid"):
        payload = order_payload(order_id, holds, **kw)
        wid = f"again-{topic}-{order_id}"
        deliver(store, topic, payload, webhook_id=wid)
        deliver(store, topic, payload, webhook_id=wid)
        deliver(store, topic, payload)


# --------------------------------------------------------------------------- product


def test_a_cheap_line_of_another_product_books_nothing(store: Storefront, admin: Admin,
                                                       cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    deliver(store, "orders/paid", order_payload(1, [h], price="0.01", variant_id=999))
    assert bookings(admin) == []
    assert refunds(admin) == [("wrong_product", "0.01", "100", 1)]
    redeliver_all(store, 1, [h], price="0.01", variant_id=999)
    assert bookings(admin) == []
    assert refunds(admin) == [("wrong_product", "0.01", "100", 1)]
    with ctx.db.read() as s:
        assert s.get(Claim, h).order_id is None  # the hold was not turned into a booking


def test_a_line_without_a_variant_is_the_wrong_product(store: Storefront, admin: Admin,
                                                       cat: dict[str, Any]) -> None:
    h = hold(store, cat)
    deliver(store, "orders/paid", order_payload(2, [h], variant_id=None))
    assert bookings(admin) == []
    assert [r[0] for r in refunds(admin)] == ["wrong_product"]


def test_ids_compare_as_numbers_whatever_their_spelling(store: Storefront, admin: Admin,
                                                        cat: dict[str, Any]) -> None:
    # The service names its variant as a gid; Shopify's line sends the number.
    assert admin("PATCH", f"/services/{cat['service']}",
                 {"variant_id": "gid://shopify/ProductVariant/4242"}).status_code == 200
    h = hold(store, cat)
    payload = order_payload(3, [h])
    payload["line_items"][0]["variant_id"] = "gid://shopify/ProductVariant/4242"
    deliver(store, "orders/paid", payload)
    assert [b["status"] for b in bookings(admin)] == ["confirmed"]
    assert refunds(admin) == []


def test_without_a_variant_the_product_must_match(store: Storefront, admin: Admin,
                                                  cat: dict[str, Any]) -> None:
    assert admin("PATCH", f"/services/{cat['service']}",
                 {"variant_id": None, "product_id": 9100}).status_code == 200
    good, bad = hold(store, cat), hold(store, cat, TUE_930)
    deliver(store, "orders/paid", order_payload(4, [good], variant_id=1))  # product 9100
    payload = order_payload(5, [bad])
    payload["line_items"][0]["product_id"] = 9101
    deliver(store, "orders/paid", payload)
    assert [(b["id"], b["status"]) for b in bookings(admin)] == [(good, "confirmed")]
    assert [r[0] for r in refunds(admin)] == ["wrong_product"]


# --------------------------------------------------------------------------- quantity


def test_five_units_book_one_seat_and_refund_four(store: Storefront, admin: Admin,
                                                  cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    deliver(store, "orders/paid", order_payload(6, [h], price="50.00", quantity=5))
    [b] = bookings(admin)
    assert (b["id"], b["status"], b["seats"]) == (h, "confirmed", 1)
    assert refunds(admin) == [("extra_quantity", "200.00", "600", 4)]
    redeliver_all(store, 6, [h], price="50.00", quantity=5)
    assert len(bookings(admin)) == 1
    assert refunds(admin) == [("extra_quantity", "200.00", "600", 4)]
    assert not free(store, cat)


@pytest.mark.parametrize(("quantity", "logged"), [
    (250_000, 249_999),  # above the old 100,000 cut-off, which read it as one unit
    ("3000000", 2_999_999),
    (3_000_000_000, 2**31 - 2),  # beyond what refunds.quantity holds: as many as it can
])
def test_a_large_quantity_books_one_seat_and_refunds_every_other_unit(
        store: Storefront, admin: Admin, cat: dict[str, Any], quantity: Any,
        logged: int) -> None:
    h = hold(store, cat)
    deliver(store, "orders/paid", order_payload(14, [h], price="2.00", quantity=quantity))
    [b] = bookings(admin)
    assert (b["id"], b["status"], b["seats"]) == (h, "confirmed", 1)
    assert refunds(admin) == [("extra_quantity", f"{2 * logged}.00", "1400", logged)]
    redeliver_all(store, 14, [h], price="2.00", quantity=quantity)
    assert refunds(admin) == [("extra_quantity", f"{2 * logged}.00", "1400", logged)]


def test_extra_units_of_a_pending_order_then_paid(store: Storefront, admin: Admin,
                                                  cat: dict[str, Any]) -> None:
    h = hold(store, cat)
    deliver(store, "orders/create", order_payload(7, [h], financial_status="pending",
                                                  price="10.00", quantity="3"))  # type: ignore[arg-type]
    assert [b["status"] for b in bookings(admin)] == ["pending"]
    assert refunds(admin) == [("extra_quantity", "20.00", "700", 2)]
    deliver(store, "orders/paid", order_payload(7, [h], price="10.00", quantity=3))
    assert [b["status"] for b in bookings(admin)] == ["confirmed"]
    assert refunds(admin) == [("extra_quantity", "20.00", "700", 2)]


# --------------------------------------------------------------------------- late lines


def test_a_late_line_after_the_notice_closed_is_refunded(store: Storefront, admin: Admin,
                                                         cat: dict[str, Any], ctx: Any) -> None:
    assert admin("PATCH", f"/services/{cat['service']}",
                 {"min_notice_minutes": 600}).status_code == 200
    h = hold(store, cat)  # 20 hours ahead: fine
    ctx.clock.advance(11 * HOUR)  # the hold expired, and 9 hours is less than the notice
    deliver(store, "orders/paid", order_payload(8, [h]))
    assert bookings(admin) == []
    assert refunds(admin) == [("slot_unavailable", "50.00", "800", 1)]
    redeliver_all(store, 8, [h])
    assert refunds(admin) == [("slot_unavailable", "50.00", "800", 1)]


def test_a_late_line_beyond_the_horizon_now_is_refunded(store: Storefront, admin: Admin,
                                                        cat: dict[str, Any], ctx: Any) -> None:
    thu_9 = "2026-12-03T08:00:00Z"  # 68 hours ahead
    h = hold(store, cat, thu_9)
    ctx.clock.advance(HOUR)  # the hold expired
    # The merchant now offers one day ahead only: Thursday is beyond the horizon.
    assert admin("PATCH", f"/services/{cat['service']}",
                 {"max_days_ahead": 1}).status_code == 200
    deliver(store, "orders/paid", order_payload(15, [h]))
    assert bookings(admin) == []
    assert refunds(admin) == [("slot_unavailable", "50.00", "1500", 1)]
    # A live hold's time is its own, whatever the horizon says since.
    admin("PATCH", f"/services/{cat['service']}", {"max_days_ahead": 60})
    live = hold(store, cat, thu_9, ip="192.0.2.2")
    admin("PATCH", f"/services/{cat['service']}", {"max_days_ahead": 1})
    deliver(store, "orders/paid", order_payload(16, [live]))
    assert [(b["id"], b["status"]) for b in bookings(admin)] == [(live, "confirmed")]


def test_a_late_line_still_offered_and_free_books(store: Storefront, admin: Admin,
                                                  cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    ctx.clock.advance(5 * HOUR)
    deliver(store, "orders/paid", order_payload(9, [h]))
    assert [b["status"] for b in bookings(admin)] == ["confirmed"]
    assert refunds(admin) == []


def test_a_late_line_outside_the_experts_hours_now_is_refunded(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    ctx.clock.advance(HOUR)
    # The expert closed Tuesday meanwhile.
    assert admin("PUT", f"/experts/{cat['expert']}/schedule",
                 {"weekly": {"mon": [["09:00", "17:00"]]}, "overrides": []}).status_code == 200
    deliver(store, "orders/paid", order_payload(10, [h]))
    assert bookings(admin) == []
    assert [r[0] for r in refunds(admin)] == ["slot_unavailable"]


def test_a_start_that_passed_never_books(store: Storefront, admin: Admin,
                                         cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    ctx.clock.advance(21 * HOUR)  # Tuesday 09:00Z: the 08:00Z start has passed
    deliver(store, "orders/paid", order_payload(11, [h]))
    assert bookings(admin) == []
    assert refunds(admin) == [("slot_passed", "50.00", "1100", 1)]
    redeliver_all(store, 11, [h])
    assert refunds(admin) == [("slot_passed", "50.00", "1100", 1)]


def test_a_live_hold_whose_start_passed_does_not_book(store: Storefront, admin: Admin,
                                                      cat: dict[str, Any], ctx: Any) -> None:
    ctx.clock.set(datetime(2026, 11, 30, 12, 25, tzinfo=UTC))
    h = hold(store, cat, "2026-11-30T12:30:00Z")  # 13:30 Berlin, five minutes ahead
    ctx.clock.set(datetime(2026, 11, 30, 12, 31, tzinfo=UTC))  # the hold lives until 12:35
    with ctx.db.read() as s:
        assert s.get(Claim, h).status == "held"
    deliver(store, "orders/paid", order_payload(12, [h]))
    assert bookings(admin) == []
    assert [r[0] for r in refunds(admin)] == ["slot_passed"]


def test_a_live_hold_books_even_when_notice_closed_since(store: Storefront, admin: Admin,
                                                         cat: dict[str, Any]) -> None:
    h = hold(store, cat)
    # It was offered when held; a live hold's time is its own.
    assert admin("PATCH", f"/services/{cat['service']}",
                 {"min_notice_minutes": 2 * 24 * 60}).status_code == 200
    deliver(store, "orders/paid", order_payload(13, [h]))
    assert [b["status"] for b in bookings(admin)] == ["confirmed"]


# --------------------------------------------------------------------------- pending


def _pending(store: Storefront, admin: Admin, cat: dict[str, Any], order_id: int,
             hours: int = 2) -> str:
    assert admin("PATCH", "/settings", {"pending_hold_hours": hours}).json[
        "pending_hold_hours"] == hours
    h = hold(store, cat)
    deliver(store, "orders/create", order_payload(order_id, [h], financial_status="pending"))
    assert [b["status"] for b in bookings(admin)] == ["pending"]
    return h


def test_a_pending_booking_lapses_after_pending_hold_hours(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    h = _pending(store, admin, cat, 20)
    ctx.clock.advance(2 * HOUR - 1)
    assert not free(store, cat)
    assert store.hold(cat["service"], cat["expert"], TUE_9, ip="192.0.2.50"
                      ).status_code == 409
    ctx.clock.advance(2)
    assert free(store, cat)  # availability: before any sweeper ran
    other = hold(store, cat, ip="192.0.2.51")  # holdable again
    with ctx.db.read() as s:
        lapsed = s.get(Claim, h)
        assert (lapsed.status, lapsed.order_id) == ("expired", "20")
        assert s.get(Claim, other).status == "held"
    # A redelivered unpaid create does not take the time back.
    deliver(store, "orders/create", order_payload(20, [h], financial_status="pending"))
    with ctx.db.read() as s:
        assert s.get(Claim, other).status == "held"
    assert refunds(admin) == []


def test_the_sweeper_lapses_pending_bookings_and_keeps_them(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    h = _pending(store, admin, cat, 21)
    ctx.clock.advance(3 * HOUR)
    with ctx.db.write() as s:
        expired, _ = sweep(s, ctx.clock.now())
    assert expired == 1  # the pending booking (its hold is the same row)
    ctx.clock.advance(40 * 24 * HOUR)
    with ctx.db.write() as s:
        sweep(s, ctx.clock.now())
    with ctx.db.read() as s:
        assert s.get(Claim, h).status == "expired"  # kept: it carries an order


def test_late_paid_after_the_lapse_books_when_free(store: Storefront, admin: Admin,
                                                   cat: dict[str, Any], ctx: Any) -> None:
    h = _pending(store, admin, cat, 22)
    ctx.clock.advance(3 * HOUR)
    assert free(store, cat)
    deliver(store, "orders/paid", order_payload(22, [h]))
    assert [(b["id"], b["status"]) for b in bookings(admin)] == [(h, "confirmed")]
    assert not free(store, cat)
    assert refunds(admin) == []
    redeliver_all(store, 22, [h])
    assert [(b["id"], b["status"]) for b in bookings(admin)] == [(h, "confirmed")]


def test_late_paid_after_the_lapse_is_refunded_when_taken(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    h = _pending(store, admin, cat, 23)
    ctx.clock.advance(3 * HOUR)
    other = hold(store, cat, ip="192.0.2.60")
    deliver(store, "orders/paid", order_payload(23, [h], price="45.50"))
    assert bookings(admin) == []
    assert refunds(admin) == [("slot_unavailable", "45.50", "2300", 1)]
    redeliver_all(store, 23, [h], price="45.50")
    assert refunds(admin) == [("slot_unavailable", "45.50", "2300", 1)]
    with ctx.db.read() as s:
        assert s.get(Claim, other).status == "held"


def test_late_paid_after_the_lapse_refunds_only_the_booked_units(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    admin("PATCH", "/settings", {"pending_hold_hours": 1})
    h = hold(store, cat)
    deliver(store, "orders/create", order_payload(24, [h], financial_status="pending",
                                                  price="10.00", quantity=3))
    ctx.clock.advance(21 * HOUR)  # lapsed, and the start has passed
    deliver(store, "orders/paid", order_payload(24, [h], price="10.00", quantity=3))
    assert refunds(admin) == [("extra_quantity", "20.00", "2400", 2),
                              ("slot_passed", "10.00", "2400", 1)]


def test_pending_hold_hours_is_a_validated_setting(admin: Admin) -> None:
    assert admin("GET", "/settings").json["pending_hold_hours"] == 48
    assert admin("PATCH", "/settings", {"pending_hold_hours": 720}).json[
        "pending_hold_hours"] == 720
    for bad in (0, 721, 1.5, "48", True, None, [48]):
        r = admin("PATCH", "/settings", {"pending_hold_hours": bad})
        assert r.status_code == 400, bad
        assert r.json["error"]["code"]
    assert admin("PUT", "/settings", {}).json["pending_hold_hours"] == 48


# --------------------------------------------------------------------------- auto-refund


def test_auto_refund_waits_for_the_payment_and_refunds_once(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    assert admin("PATCH", "/settings", {"auto_refund": True}).status_code == 200
    payload = order_payload(30, ["bk_unknown"], financial_status="pending")
    deliver(store, "orders/create", payload, webhook_id="create-30")
    assert [r[0] for r in refunds(admin)] == ["hold_unknown"]
    assert shopify_refunds_queued(ctx) == 0  # not paid: refundCreate must not be called
    [entry] = admin("GET", "/refunds").json["refunds"]
    assert entry["shopify_refund"]["status"] == "awaiting_payment"
    paid = order_payload(30, ["bk_unknown"])
    deliver(store, "orders/paid", paid, webhook_id="paid-30")
    assert shopify_refunds_queued(ctx) == 1
    for wid in ("paid-30", None, "create-30", None):
        deliver(store, "orders/paid" if wid != "create-30" else "orders/create",
                paid if wid != "create-30" else payload, webhook_id=wid)
    assert shopify_refunds_queued(ctx) == 1
    assert [r[0] for r in refunds(admin)] == ["hold_unknown"]


def test_auto_refund_of_a_cancelled_unpaid_order_is_never_queued(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    admin("PATCH", "/settings", {"auto_refund": True})
    h = hold(store, cat)
    deliver(store, "orders/create", order_payload(31, [h], financial_status="pending",
                                                  quantity=2))
    assert [r[0] for r in refunds(admin)] == ["extra_quantity"]
    deliver(store, "orders/cancelled", order_payload(31, [h], cancelled=True, quantity=2))
    deliver(store, "orders/paid", order_payload(31, [h], quantity=2))
    assert shopify_refunds_queued(ctx) == 0
    [entry] = admin("GET", "/refunds").json["refunds"]
    assert entry["shopify_refund"]["status"] == "skipped"


def test_auto_refund_of_a_paid_order_is_queued_at_once(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    admin("PATCH", "/settings", {"auto_refund": True})
    h = hold(store, cat)
    deliver(store, "orders/paid", order_payload(32, [h], quantity=2))
    assert shopify_refunds_queued(ctx) == 1
    redeliver_all(store, 32, [h], quantity=2)
    assert shopify_refunds_queued(ctx) == 1


# --------------------------------------------------------------------------- merchant cancel


def test_merchant_cancel_of_a_paid_booking_refunds_once(store: Storefront, admin: Admin,
                                                        cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    deliver(store, "orders/paid", order_payload(40, [h], price="50.00", currency="USD"))
    listed = admin("GET", "/bookings").json["bookings"]
    # The list says what a cancel would refund (the admin's dialog shows it beforehand).
    assert [(b["id"], b["amount"], b["currency"]) for b in listed] == [(h, "50.00", "USD")]
    r = admin("POST", f"/bookings/{h}/cancel")
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    want = {"reason": "merchant_cancelled", "amount": "50.00", "currency": "USD",
            "shopify": "off"}
    assert r.json["refund"] == want
    again = admin("POST", f"/bookings/{h}/cancel")
    assert again.status_code == 200 and again.json["refund"] == want
    assert refunds(admin) == [("merchant_cancelled", "50.00", "4000", 1)]
    assert shopify_refunds_queued(ctx) == 0
    redeliver_all(store, 40, [h], price="50.00", currency="USD")
    assert refunds(admin) == [("merchant_cancelled", "50.00", "4000", 1)]
    assert free(store, cat)


def test_merchant_cancel_with_auto_refund_queues_the_shopify_refund(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    admin("PATCH", "/settings", {"auto_refund": True})
    h = hold(store, cat)
    deliver(store, "orders/paid", order_payload(41, [h], price="30.00", quantity=2))
    assert shopify_refunds_queued(ctx) == 1  # the extra unit
    r = admin("POST", f"/bookings/{h}/cancel")
    assert r.json["refund"] == {"reason": "merchant_cancelled", "amount": "30.00",
                                "currency": "EUR", "shopify": "queued"}
    admin("POST", f"/bookings/{h}/cancel")
    assert shopify_refunds_queued(ctx) == 2
    assert refunds(admin) == [("extra_quantity", "30.00", "4100", 1),
                              ("merchant_cancelled", "30.00", "4100", 1)]
    with ctx.db.read() as s:
        from engine.services.shopify_actions import idempotency_key

        keys = sorted(idempotency_key(x) for x in s.scalars(select(Refund)))
    assert keys == ["consultbook-refund-41-4100-cancel", "consultbook-refund-41-4100-extra"]


def test_merchant_cancel_of_a_pending_booking_writes_no_refund(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    deliver(store, "orders/create", order_payload(42, [h], financial_status="pending"))
    r = admin("POST", f"/bookings/{h}/cancel")
    assert r.status_code == 200
    assert (r.json["status"], r.json["refund"]) == ("cancelled", None)
    assert refunds(admin) == []
    # Paid for afterwards: the customer paid for a booking the shop had cancelled.
    deliver(store, "orders/paid", order_payload(42, [h]))
    deliver(store, "orders/paid", order_payload(42, [h]))
    assert [b["status"] for b in bookings(admin)] == ["cancelled"]
    assert refunds(admin) == [("merchant_cancelled", "50.00", "4200", 1)]


def test_a_queued_refund_of_an_order_cancelled_since_is_skipped(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from engine.services import shopify_actions

    admin("PATCH", "/settings", {"auto_refund": True})
    deliver(store, "orders/paid", order_payload(50, ["bk_unknown"]))
    assert shopify_refunds_queued(ctx) == 1
    deliver(store, "orders/cancelled", order_payload(50, ["bk_unknown"], cancelled=True))
    with ctx.db.read() as s:
        item = s.scalar(select(OutboxItem).where(OutboxItem.kind == "order.refund"))
        s.expunge(item)

    def no_shopify(_job: Any) -> Any:
        raise AssertionError("Shopify must not be called for a cancelled order")

    job = SimpleNamespace(item=item, db=ctx.db, clock=ctx.clock, plugins=None)
    monkeypatch.setattr(shopify_actions, "_client", no_shopify)
    shopify_actions.refund_line(job)
    [entry] = admin("GET", "/refunds").json["refunds"]
    assert entry["shopify_refund"]["status"] == "skipped"


def test_concurrent_deliveries_and_a_cancel_decide_each_entry_once(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    """Twenty deliveries of a five-unit order at once, some unpaid, with auto-refund on,
    racing the merchant's cancel: one booking, one extra_quantity entry, at most one
    merchant_cancelled entry, and each entry queued for Shopify at most once."""
    from concurrent.futures import ThreadPoolExecutor

    admin("PATCH", "/settings", {"auto_refund": True})
    h = hold(store, cat)
    deliver(store, "orders/create", order_payload(60, [h], financial_status="pending",
                                                  quantity=5))
    calls = [("orders/paid", "same")] * 6 + [("orders/create", None)] * 6 + \
        [("orders/paid", None)] * 6 + [("cancel", None)] * 2

    def send(call: tuple[str, str | None]) -> int:
        topic, wid = call
        if topic == "cancel":
            return admin("POST", f"/bookings/{h}/cancel").status_code
        status = "paid" if topic == "orders/paid" else "pending"
        return store.webhook(topic, order_payload(60, [h], financial_status=status,
                                                  quantity=5), webhook_id=wid).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(send, calls))
    assert codes == [200] * len(calls)
    [b] = bookings(admin)
    assert b["status"] == "cancelled"
    entries = refunds(admin)
    assert ("extra_quantity", "200.00", "6000", 4) in entries
    # The cancel refunds only if it came after a paid delivery; either way at most once.
    assert entries in ([("extra_quantity", "200.00", "6000", 4)],
                       [("extra_quantity", "200.00", "6000", 4),
                        ("merchant_cancelled", "50.00", "6000", 1)])
    # A final paid delivery settles a cancel that came first: the money goes back once.
    deliver(store, "orders/paid", order_payload(60, [h], quantity=5))
    assert refunds(admin) == [("extra_quantity", "200.00", "6000", 4),
                              ("merchant_cancelled", "50.00", "6000", 1)]
    assert shopify_refunds_queued(ctx) == 2
