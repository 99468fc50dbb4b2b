"""Order webhooks, privacy topics, bookings, refunds and exports, end to end through HTTP."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from engine.store.models import Claim, OutboxItem, Refund, Reminder, Shop, WebhookDelivery
from tests.conftest import Admin, Storefront, make_catalog, order_payload

TUE_9 = "2026-12-01T08:00:00Z"
TUE_930 = "2026-12-01T08:30:00Z"


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)


def hold(store: Storefront, cat: dict[str, Any], start: str = TUE_9, ip: str = "192.0.2.1"
         ) -> str:
    r = store.hold(cat["service"], cat["expert"], start, ip=ip)
    assert r.status_code == 201, r.text
    return str(r.json["hold"])


def count(ctx: Any, model: Any, *where: Any) -> int:
    with ctx.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def bookings(admin: Admin) -> list[dict[str, Any]]:
    r = admin("GET", "/bookings")
    assert r.status_code == 200, r.text
    return list(r.json["bookings"])


def free(store: Storefront, cat: dict[str, Any], start: str = TUE_9) -> bool:
    r = store.get("/availability", {"service": cat["service"], "start": "2026-12-01",
                                    "days": "1"})
    return start in [s["start"] for s in r.json["slots"]]


# --------------------------------------------------------------------------- verification


def test_bad_hmac_is_401_and_nothing_is_stored(store: Storefront, cat: dict[str, Any],
                                               ctx: Any, admin: Admin) -> None:
    h = hold(store, cat)
    r = store.webhook("orders/paid", order_payload(1, [h]), secret="shpss_wrong_secret_wrong_xx")
    assert r.status_code == 401
    assert r.json["error"]["code"] == "invalid_signature"
    assert count(ctx, WebhookDelivery) == 0
    assert bookings(admin) == []


def test_missing_hmac_and_tampered_body_are_401(store: Storefront, ctx: Any) -> None:
    r = store.client.simulate_post("/webhooks", body=b"{}", headers={
        "X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": store.domain})
    assert r.status_code == 401
    from engine.shopify import webhook_hmac
    from tests.conftest import API_SECRET

    good = webhook_hmac(b'{"id": 1}', API_SECRET)
    r = store.client.simulate_post("/webhooks", body=b'{"id": 2}', headers={
        "X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": store.domain,
        "X-Shopify-Hmac-Sha256": good})
    assert r.status_code == 401
    assert count(ctx, WebhookDelivery) == 0


def test_signed_garbage_is_400_and_unknown_topic_is_ignored(store: Storefront) -> None:
    from engine.shopify import webhook_hmac
    from tests.conftest import API_SECRET

    r = store.client.simulate_post("/webhooks", body=b"\xff{", headers={
        "X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": store.domain,
        "X-Shopify-Hmac-Sha256": webhook_hmac(b"\xff{", API_SECRET)})
    assert r.status_code == 400 and r.json["error"]["code"] == "invalid_json"
    r = store.webhook("products/update", {"id": 1})
    assert r.status_code == 200 and r.json["status"] == "ignored"
    r = store.webhook("orders/paid", {"no": "id"})
    assert r.status_code == 200 and r.json["status"] == "ignored"


# --------------------------------------------------------------------------- booking


def test_paid_order_books_the_hold_once(store: Storefront, cat: dict[str, Any], ctx: Any,
                                        admin: Admin) -> None:
    h = hold(store, cat)
    r = store.webhook("orders/paid", order_payload(1001, [h]), webhook_id="w1")
    assert r.status_code == 200 and r.json["status"] == "processed"
    [b] = bookings(admin)
    assert b["id"] == h and b["status"] == "confirmed" and b["order_id"] == "1001"
    assert b["customer"] == {"name": "Jon Snow", "email": "jon@example.com"}
    assert (b["start"], b["end"]) == (TUE_9, "2026-12-01T08:30:00Z")
    assert not free(store, cat)
    # redelivery (same webhook id) and the other topic for the same order change nothing
    assert store.webhook("orders/paid", order_payload(1001, [h]), webhook_id="w1"
                         ).json["status"] == "duplicate"
    assert store.webhook("orders/create", order_payload(1001, [h])).status_code == 200
    assert len(bookings(admin)) == 1
    assert count(ctx, OutboxItem, OutboxItem.kind == "booking.confirmed") == 1
    # reminders: 24 h before is 2026-11-30T08:00Z (already past at noon) -> skipped
    assert count(ctx, Reminder, Reminder.status == "pending") == 1
    assert count(ctx, Reminder, Reminder.status == "skipped") == 1


def test_unpaid_create_keeps_a_pending_booking_until_paid(store: Storefront, ctx: Any,
                                                          cat: dict[str, Any],
                                                          admin: Admin) -> None:
    h = hold(store, cat)
    store.webhook("orders/create", order_payload(5, [h], financial_status="pending"))
    assert [b["status"] for b in bookings(admin)] == ["pending"]
    ctx.clock.advance(3600)  # long past the hold's ten minutes: still taken
    assert not free(store, cat)
    assert count(ctx, OutboxItem) == 0
    store.webhook("orders/paid", order_payload(5, [h]))
    assert [b["status"] for b in bookings(admin)] == ["confirmed"]
    assert count(ctx, OutboxItem, OutboxItem.kind == "booking.confirmed") == 1
    # a late, stale orders/create saying "pending" does not undo "paid"
    store.webhook("orders/create", order_payload(5, [h], financial_status="pending"))
    assert [b["status"] for b in bookings(admin)] == ["confirmed"]


def test_cancel_before_create_leaves_no_booking(store: Storefront, cat: dict[str, Any],
                                                admin: Admin, ctx: Any) -> None:
    h = hold(store, cat)
    store.webhook("orders/cancelled", order_payload(7, [h], cancelled=True))
    assert free(store, cat)  # the hold was released
    store.webhook("orders/paid", order_payload(7, [h]))
    store.webhook("orders/create", order_payload(7, [h]))
    assert bookings(admin) == []
    assert count(ctx, Refund) == 0
    assert free(store, cat)


def test_cancel_after_paid_frees_the_slot_and_queues_the_cancellation(
        store: Storefront, cat: dict[str, Any], admin: Admin, ctx: Any) -> None:
    h = hold(store, cat)
    store.webhook("orders/paid", order_payload(8, [h]))
    store.webhook("orders/cancelled", order_payload(8, [h], cancelled=True))
    store.webhook("orders/cancelled", order_payload(8, [h], cancelled=True))
    assert [b["status"] for b in bookings(admin)] == ["cancelled"]
    assert free(store, cat)
    assert count(ctx, OutboxItem, OutboxItem.kind == "booking.cancelled") == 1
    assert count(ctx, Reminder, Reminder.status == "pending") == 0
    store.webhook("orders/paid", order_payload(8, [h]))  # late paid: stays cancelled
    assert [b["status"] for b in bookings(admin)] == ["cancelled"]


def test_expired_hold_still_books_when_the_slot_is_free(store: Storefront, ctx: Any,
                                                        cat: dict[str, Any],
                                                        admin: Admin) -> None:
    h = hold(store, cat)
    ctx.clock.advance(3600)
    store.webhook("orders/paid", order_payload(9, [h]))
    assert [b["status"] for b in bookings(admin)] == ["confirmed"]
    assert count(ctx, Refund) == 0


def test_expired_hold_whose_slot_was_taken_is_refunded_once(
        store: Storefront, ctx: Any, cat: dict[str, Any], admin: Admin) -> None:
    h = hold(store, cat)
    ctx.clock.advance(601)
    other = hold(store, cat, ip="192.0.2.99")  # someone else took the time meanwhile
    store.webhook("orders/paid", order_payload(10, [h], price="45.50"))
    for _ in range(3):
        store.webhook("orders/paid", order_payload(10, [h], price="45.50"))
        store.webhook("orders/create", order_payload(10, [h], price="45.50"))
    assert bookings(admin) == []
    r = admin("GET", "/refunds")
    [entry] = r.json["refunds"]
    assert entry["order_id"] == "10" and entry["line_item_id"] == "1000"
    assert entry["reason"] == "slot_unavailable"
    assert (entry["amount"], entry["currency"]) == ("45.50", "EUR")
    with ctx.db.read() as s:
        assert s.get(Claim, other).status == "held"


def test_unknown_hold_and_quantity_are_in_the_refund(store: Storefront, admin: Admin,
                                                     cat: dict[str, Any]) -> None:
    payload = order_payload(11, ["bk_doesnotexist"], price="20.00", currency="USD")
    payload["line_items"][0]["quantity"] = 2
    payload["line_items"].append({"id": 99, "price": "5.00", "quantity": 1,
                                  "properties": []})  # not ours: ignored
    assert store.webhook("orders/paid", payload).status_code == 200
    [entry] = admin("GET", "/refunds").json["refunds"]
    assert (entry["reason"], entry["amount"], entry["currency"]) == \
        ("hold_unknown", "40.00", "USD")


def test_two_orders_for_one_hold_book_once(store: Storefront, admin: Admin,
                                           cat: dict[str, Any]) -> None:
    h = hold(store, cat)
    store.webhook("orders/paid", order_payload(12, [h]))
    store.webhook("orders/paid", order_payload(13, [h]))
    assert [b["order_id"] for b in bookings(admin)] == ["12"]
    [entry] = admin("GET", "/refunds").json["refunds"]
    assert (entry["order_id"], entry["reason"]) == ("13", "slot_unavailable")


def test_uninstalled_shop_refunds_and_locks_its_surfaces(store: Storefront, admin: Admin,
                                                         cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    assert store.webhook("app/uninstalled", {"id": 1, "domain": store.domain}
                         ).status_code == 200
    with ctx.db.read() as s:
        shop = s.scalar(select(Shop).where(Shop.domain == store.domain))
        assert shop.installed is False and shop.access_token is None
    assert admin("GET", "/bookings").status_code == 403
    r = store.get("/availability", {"service": cat["service"], "start": "2026-12-01",
                                    "days": "1"})
    assert r.status_code == 404 and r.json["error"]["code"] == "unknown_shop"
    assert store.webhook("orders/paid", order_payload(14, [h])).status_code == 200
    with ctx.db.read() as s:
        [refund] = s.scalars(select(Refund)).all()
        assert refund.reason == "shop_uninstalled"


def test_webhook_for_an_unknown_shop_is_200(store: Storefront) -> None:
    r = store.webhook("orders/paid", order_payload(1, ["x"]), domain="nobody.myshopify.com")
    assert r.status_code == 200 and r.json["status"] == "ignored"


# --------------------------------------------------------------------------- admin


def test_merchant_cancel_and_tenant_isolation(store: Storefront, admin: Admin, ctx: Any,
                                              other_admin: Admin, cat: dict[str, Any]) -> None:
    h = hold(store, cat)
    store.webhook("orders/paid", order_payload(20, [h]))
    assert other_admin("GET", "/bookings").json["bookings"] == []
    assert other_admin("GET", f"/bookings/{h}").status_code == 404
    assert other_admin("POST", f"/bookings/{h}/cancel").status_code == 404
    assert other_admin("GET", "/refunds").json["refunds"] == []
    r = admin("POST", f"/bookings/{h}/cancel")
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    assert admin("POST", f"/bookings/{h}/cancel").json["status"] == "cancelled"
    assert free(store, cat)
    assert count(ctx, OutboxItem, OutboxItem.kind == "booking.cancelled") == 1
    # a hold that never became a booking is not a booking
    h2 = hold(store, cat, TUE_930)
    assert admin("POST", f"/bookings/{h2}/cancel").status_code == 404


def test_bookings_range_filter(store: Storefront, admin: Admin, cat: dict[str, Any]) -> None:
    store.webhook("orders/paid", order_payload(30, [hold(store, cat, TUE_9)]))
    store.webhook("orders/paid", order_payload(31, [hold(store, cat, TUE_930)]))
    r = admin("GET", "/bookings?from=2026-12-01T08:00:00Z&to=2026-12-01T08:30:00Z")
    assert [b["order_id"] for b in r.json["bookings"]] == ["30"]
    assert admin("GET", "/bookings?from=yesterday").status_code == 400
    assert admin("GET", "/bookings?from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z"
                 ).status_code == 400


def test_csv_export_defuses_formulas(store: Storefront, admin: Admin, cat: dict[str, Any]
                                     ) -> None:
    payload = order_payload(40, [hold(store, cat)], first_name="=HYPERLINK(\"http://x\")",
                            last_name="+1", email="a@example.com")
    store.webhook("orders/paid", payload)
    r = admin("GET", "/export?format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["customer_name"].startswith("'=")
    assert rows[0]["status"] == "confirmed"


def test_ics_export_cannot_be_injected(store: Storefront, admin: Admin, cat: dict[str, Any]
                                       ) -> None:
    payload = order_payload(41, [hold(store, cat)],
                            first_name="Eve\r\nATTENDEE:mailto:evil@example.com\r\nX",
                            last_name="Evil;DESCRIPTION:pwned")
    store.webhook("orders/paid", payload)
    r = admin("GET", "/export?format=ics")
    assert r.status_code == 200
    text = r.content.decode()
    assert "\r\nATTENDEE" not in text
    cal = Calendar.from_ical(r.content)
    [event] = [c for c in cal.walk("VEVENT")]
    assert str(event["uid"]).endswith("@consultbook")
    assert "ATTENDEE" not in event
    assert admin("GET", "/export?format=pdf").status_code == 400


# --------------------------------------------------------------------------- privacy


def test_customers_redact_erases_personal_data_and_keeps_the_slot(
        store: Storefront, admin: Admin, cat: dict[str, Any], ctx: Any) -> None:
    h = hold(store, cat)
    store.webhook("orders/paid", order_payload(50, [h], email="jane@example.com",
                                               customer_id=501))
    store.webhook("customers/data_request", {"shop_domain": store.domain,
                                             "customer": {"id": 501,
                                                          "email": "jane@example.com"},
                                             "orders_requested": [50]})
    store.webhook("customers/redact", {"shop_domain": store.domain,
                                       "customer": {"id": 501, "email": "jane@example.com"},
                                       "orders_to_redact": [50]})
    [b] = bookings(admin)
    assert b["customer"] == {"name": None, "email": None} and b["status"] == "confirmed"
    assert not free(store, cat)
    assert "jane@example.com" not in admin("GET", "/export?format=csv").text
    assert b"jane" not in admin("GET", "/export?format=ics").content
    assert "jane" not in admin("GET", "/privacy-requests").text


def test_customers_data_request_is_exported_to_the_merchant(
        store: Storefront, admin: Admin, cat: dict[str, Any], other_admin: Admin) -> None:
    store.webhook("orders/paid", order_payload(60, [hold(store, cat)], email="kim@example.com",
                                               customer_id=601))
    store.webhook("orders/paid", order_payload(61, [hold(store, cat, TUE_930)],
                                               email="other@example.com", customer_id=602))
    store.webhook("customers/data_request", {"customer": {"id": 601, "email": "kim@example.com"},
                                             "orders_requested": [60]})
    [req] = admin("GET", "/privacy-requests").json["requests"]
    assert req["topic"] == "customers/data_request"
    export = admin("GET", f"/privacy-requests/{req['id']}/export").json
    assert [b["order_id"] for b in export["bookings"]] == ["60"]
    assert other_admin("GET", f"/privacy-requests/{req['id']}/export").status_code == 404


def test_shop_redact_deletes_the_shops_data(store: Storefront, admin: Admin, ctx: Any,
                                            cat: dict[str, Any], other_shop: Any) -> None:
    store.webhook("orders/paid", order_payload(70, [hold(store, cat)]))
    assert store.webhook("shop/redact", {"shop_domain": store.domain}).status_code == 200
    with ctx.db.read() as s:
        assert s.scalar(select(Shop).where(Shop.domain == store.domain)) is None
        assert s.scalar(select(Shop).where(Shop.domain == other_shop.domain)) is not None
    assert count(ctx, Claim) == 0


def test_concurrent_duplicates_and_sibling_topics_book_once(store: Storefront, ctx: Any,
                                                            cat: dict[str, Any],
                                                            admin: Admin) -> None:
    """Twenty deliveries at once: the same webhook id ten times, and the order's other
    topics under fresh ids. One booking, one outbox row, every answer 200."""
    from concurrent.futures import ThreadPoolExecutor

    h = hold(store, cat)
    calls = [("orders/paid", "same-id")] * 10 + [("orders/create", None)] * 5 + \
        [("orders/paid", None)] * 5

    def send(call: tuple[str, str | None]) -> int:
        topic, wid = call
        return store.webhook(topic, order_payload(90, [h]), webhook_id=wid).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(send, calls))
    assert codes == [200] * len(calls)
    assert [b["status"] for b in bookings(admin)] == ["confirmed"]
    assert count(ctx, OutboxItem, OutboxItem.kind == "booking.confirmed") == 1
    assert count(ctx, WebhookDelivery, WebhookDelivery.webhook_id == "same-id") == 1
    assert count(ctx, Refund) == 0


def test_customers_redact_removes_the_customers_mail_from_the_outbox(
        store: Storefront, ctx: Any, tmp_path: Any, cat: dict[str, Any]) -> None:
    import dataclasses

    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "1.eml").write_text("To: Jane <JANE@example.com>\n\nhello")
    (outbox / "2.eml").write_text("To: other@example.com\n\nhello")
    ctx.config = dataclasses.replace(ctx.config, outbox_dir=str(outbox))
    store.webhook("customers/redact", {"customer": {"id": 1, "email": "jane@example.com"}})
    assert sorted(p.name for p in outbox.iterdir()) == ["2.eml"]
