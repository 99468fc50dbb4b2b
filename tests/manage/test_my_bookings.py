"""My bookings: the signed logged_in_customer_id's bookings in this shop from 30 days
ago on, each with the manage link the mails carry; nobody logged in: 401."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import falcon.testing

from engine.bootstrap import Context
from engine.services.shops import ShopRef
from tests.conftest import Admin, Storefront, make_catalog
from tests.manage.helpers import THU_9, WED_9, WED_10, Customer, book, link


def test_login_required(admin: Admin, customer: Customer) -> None:
    for who in (None, "", "  "):
        r = customer.my_bookings(who)
        assert (r.status_code, r.json["error"]["code"]) == (401, "login_required"), who


def test_my_bookings_with_their_links(admin: Admin, store: Storefront, ctx: Context,
                                      customer: Customer, client: falcon.testing.TestClient,
                                      other_shop: ShopRef, other_admin: Admin) -> None:
    cat = make_catalog(admin)
    ctx.clock.set(datetime(2026, 10, 26, 12, tzinfo=UTC))  # type: ignore[attr-defined]
    # 32 days before "now" (not listed) and 28 days before (listed, although past).
    book(store, cat, "2026-10-29T08:00:00Z", order_id=1004, customer_id=77)
    recent = book(store, cat, "2026-11-02T08:00:00Z", order_id=1005, customer_id=77)
    ctx.clock.set(datetime(2026, 11, 30, 12, tzinfo=UTC))  # type: ignore[attr-defined]
    first = book(store, cat, THU_9, order_id=1001, customer_id=77)
    second = book(store, cat, WED_9, order_id=1002, customer_id=77)
    book(store, cat, WED_10, order_id=1003, customer_id=78)  # someone else's
    # The same customer id in another shop is another customer.
    other = Storefront(client, ctx, other_shop.domain)
    book(other, make_catalog(other_admin), "2026-12-02T15:00:00Z", order_id=2001,
         customer_id=77)
    mail_link = link(ctx, first)  # the confirmation mail's link, made first

    r = customer.my_bookings("77")
    assert r.status_code == 200, r.text
    items = r.json["bookings"]
    assert [b["id"] for b in items] == [recent, second, first]  # by start
    by_id = {b["id"]: b for b in items}
    assert by_id[first]["manage_url"] == mail_link  # the link in the mail still works
    for b in items:
        token = parse_qs(urlsplit(b["manage_url"]).query)["token"][0]
        opened = customer.get(b["id"], token)
        assert opened.status_code == 200
        assert {k: v for k, v in b.items() if k != "manage_url"} == opened.json["booking"]
    # Cancelled bookings stay listed (with their state); redacted ones go.
    customer.cancel(second, parse_qs(urlsplit(by_id[second]["manage_url"]).query)["token"][0])
    assert [b["status"] for b in customer.my_bookings("77").json["bookings"]] == [
        "confirmed", "cancelled", "confirmed"]
    r = store.webhook("customers/redact", {"shop_domain": store.domain,
                                           "customer": {"id": 77}, "orders_to_redact": []})
    assert r.status_code == 200
    assert customer.my_bookings("77").json == {"bookings": []}
