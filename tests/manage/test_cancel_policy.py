"""The shop's policy, enforced: cancel and reschedule close at exactly
``*_notice_minutes`` (real minutes) before the current start -- pinned across the
November DST change in America/New_York -- after ``max_reschedules``, or when switched
off (403 policy_closed); a cancel frees the slot, writes one refund entry
``customer_cancelled`` for a paid booking, and a second cancel does nothing more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import falcon.testing
import pytest
from sqlalchemy import func, select

from engine.bootstrap import Context
from engine.services.shops import ShopRef, install_shop
from engine.store.models import OutboxItem, Refund
from tests.conftest import Admin, Storefront, make_catalog, order_payload
from tests.manage.helpers import THU_9, THU_10, WED_9, Customer, book, claim_of, policy, token


def _refunds(ctx: Context) -> list[tuple[str, str]]:
    with ctx.db.read() as s:
        return [(r.reason, r.amount) for r in s.scalars(select(Refund))]


def test_cancel_frees_the_slot_and_refunds_once(admin: Admin, store: Storefront,
                                                ctx: Context, customer: Customer) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001, price="80.00")
    tok = token(ctx, bid)
    r = customer.cancel(bid, tok)
    assert r.status_code == 200, r.text
    b = r.json["booking"]
    assert (b["status"], b["can_cancel"], b["can_reschedule"]) == ("cancelled", False, False)
    assert claim_of(ctx, bid).cancelled_by == "customer"
    assert _refunds(ctx) == [("customer_cancelled", "80.00")]
    assert store.hold(cat["service"], cat["expert"], WED_9).status_code == 201
    # Again: 200, nothing more happens (even though the policy would now say no).
    policy(admin, customer_cancel=False)
    again = customer.cancel(bid, tok)
    assert again.status_code == 200 and again.json == r.json
    assert _refunds(ctx) == [("customer_cancelled", "80.00")]
    with ctx.db.read() as s:
        assert s.scalar(select(func.count()).select_from(OutboxItem).where(
            OutboxItem.booking_id == bid, OutboxItem.kind == "booking.cancelled")) == 1
    # A cancelled booking cannot be moved.
    r = customer.reschedule(bid, tok, THU_9)
    assert (r.status_code, r.json["error"]["code"]) == (403, "policy_closed")


def test_an_unpaid_booking_is_cancelled_without_a_refund_entry(
        admin: Admin, store: Storefront, ctx: Context, customer: Customer) -> None:
    cat = make_catalog(admin)
    bid = store.hold(cat["service"], cat["expert"], WED_9).json["hold"]
    r = store.webhook("orders/create", order_payload(1001, [bid], financial_status="pending"))
    assert r.status_code == 200 and claim_of(ctx, bid).status == "pending"
    # (no mail was sent for it: its link comes from my bookings)
    r = customer.cancel(bid, token(ctx, bid))
    assert r.status_code == 200 and r.json["booking"]["status"] == "cancelled"
    assert _refunds(ctx) == []


def test_switches_and_the_reschedule_count(admin: Admin, store: Storefront, ctx: Context,
                                           customer: Customer) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    tok = token(ctx, bid)
    policy(admin, customer_cancel=False, customer_reschedule=False)
    b = customer.get(bid, tok).json["booking"]
    assert (b["can_cancel"], b["can_reschedule"], b["cancel_until"],
            b["reschedule_until"]) == (False, False, None, None)
    for r in (customer.cancel(bid, tok), customer.reschedule(bid, tok, THU_9)):
        assert (r.status_code, r.json["error"]["code"]) == (403, "policy_closed")
    policy(admin, customer_cancel=True, customer_reschedule=True, max_reschedules=1)
    assert customer.reschedule(bid, tok, THU_9).status_code == 200
    b = customer.get(bid, tok).json["booking"]
    assert (b["can_reschedule"], b["reschedule_until"], b["can_cancel"]) == (False, None, True)
    r = customer.reschedule(bid, tok, THU_10)
    assert (r.status_code, r.json["error"]["code"]) == (403, "policy_closed")
    assert claim_of(ctx, bid).start_at == datetime(2026, 12, 3, 8, tzinfo=UTC)
    policy(admin, max_reschedules=0)
    assert customer.reschedule(bid, tok, THU_10).status_code == 403


def test_policy_settings_are_validated(admin: Admin) -> None:
    assert admin("GET", "/settings").json["max_reschedules"] == 2
    for bad in ({"customer_cancel": "yes"}, {"cancel_notice_minutes": -1},
                {"reschedule_notice_minutes": 525601}, {"max_reschedules": 101},
                {"notify_experts": 1}):
        r = admin("PATCH", "/settings", bad)
        assert r.status_code == 400, bad
    assert admin("PATCH", "/settings", {"cancel_notice_minutes": 0,
                                        "notify_experts": False}).status_code == 200


# --------------------------------------------------------------------------- DST edges

# Monday 2 November 2026, 09:00 in New York (EST, UTC-5) = 14:00Z. DST ended on Sunday
# 1 November at 06:00Z (02:00 EDT -> 01:00 EST). 48 real hours before the start is
# 2026-10-31T14:00Z = 10:00 EDT: the wall clock says 10:00, not 09:00.
START = "2026-11-02T14:00:00Z"
CUT = datetime(2026, 10, 31, 14, 0, tzinfo=UTC)


@pytest.fixture
def ny(ctx: Context, client: falcon.testing.TestClient) -> tuple[ShopRef, Admin, Storefront,
                                                                 Customer]:
    shop = install_shop(ctx.db, ctx.clock, ctx.keyring, "gamma.myshopify.com",
                        "America/New_York")
    return (shop, Admin(client, ctx, shop.domain), Storefront(client, ctx, shop.domain),
            Customer(client, ctx, shop.domain))


@pytest.mark.parametrize("action", ["cancel", "reschedule"])
def test_the_cut_off_is_exact_across_the_dst_change(
        ctx: Context, ny: tuple[ShopRef, Admin, Storefront, Customer], action: str) -> None:
    _, admin, store, customer = ny
    ctx.clock.set(datetime(2026, 10, 26, 12, 0, tzinfo=UTC))  # type: ignore[attr-defined]
    cat = make_catalog(admin)
    policy(admin, cancel_notice_minutes=2880, reschedule_notice_minutes=2880)
    bid = book(store, cat, START, order_id=3001)
    tok = token(ctx, bid)
    b = customer.get(bid, tok).json["booking"]
    assert b["local"] == "2026-11-02T09:00:00-05:00"
    assert b[f"{action}_until"] == "2026-10-31T14:00:00Z"

    def attempt() -> falcon.testing.Result:
        if action == "cancel":
            return customer.cancel(bid, tok)
        return customer.reschedule(bid, tok, "2026-11-03T14:00:00Z")

    # One second after the cut-off: closed (and shown so).
    ctx.clock.set(CUT + timedelta(seconds=1))  # type: ignore[attr-defined]
    assert customer.get(bid, tok).json["booking"][f"can_{action}"] is False
    r = attempt()
    assert (r.status_code, r.json["error"]["code"]) == (403, "policy_closed")
    # Exactly at the cut-off: still open. (10:00 EDT on the Saturday; a wall-clock
    # reading of "two days before, same time" would have said 09:00 and closed it.)
    ctx.clock.set(CUT)  # type: ignore[attr-defined]
    assert customer.get(bid, tok).json["booking"][f"can_{action}"] is True
    r = attempt()
    assert r.status_code == 200, r.text
