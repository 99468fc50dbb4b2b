"""``GET /admin/api/stats``: the admin home page's numbers (engine/services/stats.py).

The bookings are made as Shopify makes them (a storefront hold, then an order webhook),
with the clock moved back for the autumn ones; the numbers are then read at NOW (Monday
2026-11-30, 13:00 in Berlin, ISO week 2026-W49). The default period is 2026-W42 to
2026-W50: nine weeks, one of them the week the clocks go back (Sunday 2026-10-25).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import func, select

from engine.bootstrap import Context
from engine.services.shops import ShopRef
from engine.store import new_id
from engine.store.models import Claim, Refund
from tests.conftest import NOW, Admin, Storefront, make_catalog, order_payload

EXPERT_B_HOURS = {"sun": [["00:00", "06:00"], ["20:00", "24:00"]], "mon": [["00:00", "02:00"]]}


def _book(ctx: Context, store: Storefront, service: str, expert: str, start: str,
          order_id: int, *, at: datetime = NOW, topic: str = "orders/paid",
          **payload: Any) -> str:
    ctx.clock.set(at)  # type: ignore[attr-defined]
    r = store.hold(service, expert, start)
    assert r.status_code == 201, r.text
    hold = r.json["hold"]
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    r = store.webhook(topic, order_payload(order_id, [hold], updated_at=stamp, **payload))
    assert r.status_code == 200, r.text
    ctx.clock.set(NOW)  # type: ignore[attr-defined]
    return str(hold)


def _stats(admin: Admin, query: str = "") -> Any:
    r = admin("GET", "/stats" + query)
    assert r.status_code == 200, r.text
    return r.json


@pytest.fixture
def business(ctx: Context, admin: Admin, store: Storefront, other_shop: ShopRef,
             client: falcon.testing.TestClient) -> dict[str, Any]:
    """Two experts (A: Mon-Fri 9-17; B: Sunday night and early Monday), one 60-minute
    service, and bookings of every kind; plus another shop's booking in the same week."""
    cat = make_catalog(admin, duration=60, experts=2)
    a, b = cat["experts"]
    assert admin("PUT", f"/experts/{b}/schedule",
                 {"weekly": EXPERT_B_HOURS, "overrides": []}).status_code == 200
    svc = cat["service"]
    ids = {
        "today": _book(ctx, store, svc, a, "2026-11-30T14:00:00Z", 2001),  # 15:00 Berlin
        "tue": _book(ctx, store, svc, a, "2026-12-01T09:00:00Z", 2002),
        "wed_usd": _book(ctx, store, svc, a, "2026-12-02T09:00:00Z", 2003, currency="USD",
                         price="80.00"),
        "thu_pending": _book(ctx, store, svc, a, "2026-12-03T09:00:00Z", 2004,
                             topic="orders/create", financial_status="pending"),
        "fri_cancelled": _book(ctx, store, svc, a, "2026-12-04T09:00:00Z", 2005),
        # Sunday 23:00 CET (the clocks went back that morning): still week 43 ...
        "sun_b": _book(ctx, store, svc, b, "2026-10-25T22:00:00Z", 2006,
                       at=datetime(2026, 10, 20, 12, tzinfo=UTC), price="30.00"),
        # ... and Monday 00:00 CET, Sunday in UTC: week 44 in the shop's time.
        "mon_b": _book(ctx, store, svc, b, "2026-10-25T23:00:00Z", 2007,
                       at=datetime(2026, 10, 20, 12, tzinfo=UTC), price="30.00"),
    }
    r = store.webhook("orders/cancelled", order_payload(2005, [ids["fri_cancelled"]],
                                                        cancelled=True))
    assert r.status_code == 200
    # Another shop's confirmed booking in the same week is never counted.
    other_admin = Admin(client, ctx, other_shop.domain)
    other = make_catalog(other_admin, duration=60)
    _book(ctx, Storefront(client, ctx, other_shop.domain), other["service"],
          other["expert"], "2026-12-01T15:00:00Z", 2001, price="999.00")
    return {"service": svc, "a": a, "b": b, "ids": ids}


def _week(doc: Any, label: str) -> Any:
    (week,) = [w for w in doc["weeks"] if w["week"] == label]
    return week


def test_weeks_count_bookings_revenue_and_cancellations_in_shop_time(
        admin: Admin, business: dict[str, Any]) -> None:
    doc = _stats(admin)
    assert (doc["timezone"], doc["from"], doc["to"]) == ("Europe/Berlin", "2026-10-12",
                                                         "2026-12-13")
    assert [w["week"] for w in doc["weeks"]] == [f"2026-W{n}" for n in range(42, 51)]
    assert [w["start"] for w in doc["weeks"]][:2] == ["2026-10-12", "2026-10-19"]
    assert _week(doc, "2026-W43") == {"week": "2026-W43", "start": "2026-10-19",
                                      "bookings": 1, "revenue": {"EUR": "30.00"},
                                      "cancelled": 0}
    assert _week(doc, "2026-W44") == {"week": "2026-W44", "start": "2026-10-26",
                                      "bookings": 1, "revenue": {"EUR": "30.00"},
                                      "cancelled": 0}
    # Four live (one pending: no revenue), one cancelled; EUR and USD apart.
    assert _week(doc, "2026-W49") == {"week": "2026-W49", "start": "2026-11-30",
                                      "bookings": 4,
                                      "revenue": {"EUR": "100.00", "USD": "80.00"},
                                      "cancelled": 1}
    others = [w for w in doc["weeks"] if w["week"] not in ("2026-W43", "2026-W44",
                                                           "2026-W49")]
    assert all((w["bookings"], w["revenue"], w["cancelled"]) == (0, {}, 0) for w in others)
    assert doc["cancellations"] == 1


def test_fill_rate_is_booked_over_offered_minutes(admin: Admin,
                                                  business: dict[str, Any]) -> None:
    doc = _stats(admin)
    experts = {e["id"]: e for e in doc["experts"]}
    a, b = experts[business["a"]], experts[business["b"]]
    # A: 9 weeks x 5 days x 8 hours; four live hours (the cancelled one is not booked).
    assert (a["booked_minutes"], a["offered_minutes"]) == (240, 9 * 5 * 480)
    assert a["fill_rate"] == round(240 / 21600, 4)
    # B: 12 hours a week, and one more on 2026-10-25 (00:00-06:00 lasted seven hours).
    assert (b["booked_minutes"], b["offered_minutes"]) == (120, 9 * 720 + 60)
    assert b["fill_rate"] == round(120 / 6540, 4)
    assert [e["name"] for e in doc["experts"]] == ["Expert 0", "Expert 1"]


def test_an_explicit_period_is_widened_to_whole_weeks(admin: Admin,
                                                      business: dict[str, Any]) -> None:
    doc = _stats(admin, "?from=2026-10-21&to=2026-10-27")
    assert (doc["from"], doc["to"]) == ("2026-10-19", "2026-11-01")
    assert [(w["week"], w["bookings"]) for w in doc["weeks"]] == [("2026-W43", 1),
                                                                  ("2026-W44", 1)]
    b = {e["id"]: e for e in doc["experts"]}[business["b"]]
    assert (b["booked_minutes"], b["offered_minutes"]) == (120, 780 + 720)
    assert doc["cancellations"] == 0
    assert doc["today"] != []  # today does not depend on the period


def test_today_lists_the_live_bookings_starting_today(admin: Admin,
                                                      business: dict[str, Any]) -> None:
    (today,) = _stats(admin)["today"]
    assert today["id"] == business["ids"]["today"]
    assert (today["start"], today["end"], today["status"]) == (
        "2026-11-30T14:00:00Z", "2026-11-30T15:00:00Z", "confirmed")
    assert (today["service_title"], today["expert_name"], today["customer_name"]) == (
        "Consultation", "Expert 0", "Jon Snow")


def test_a_lapsed_pending_booking_counts_for_nothing(ctx: Context, admin: Admin,
                                                     business: dict[str, Any]) -> None:
    ctx.clock.set(datetime(2026, 12, 2, 13, tzinfo=UTC))  # type: ignore[attr-defined]
    doc = _stats(admin)  # 48 hours after it was made: the pending slot lapsed
    assert _week(doc, "2026-W49")["bookings"] == 3
    assert {e["id"]: e for e in doc["experts"]}[business["a"]]["booked_minutes"] == 180


def _refund(ctx: Context, shop_id: str, n: int, status: str | None,
            created: datetime) -> None:
    with ctx.db.write() as session:
        session.add(Refund(id=new_id("ref"), shop_id=shop_id, order_id=f"9{n}",
                           line_item_id=f"9{n}00", reason="merchant_cancelled",
                           amount="10.00", currency="EUR", created_at=created,
                           shopify_status=status))


def test_refunds_waiting(ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
                         other_shop: ShopRef) -> None:
    make_catalog(admin)
    # A paid line whose hold nobody knows: a refund entry for the merchant (auto-refund
    # is off), logged now.
    r = store.webhook("orders/paid", order_payload(3001, ["hold_nobody_knows"]))
    assert r.status_code == 200
    long_ago = datetime(2025, 1, 6, tzinfo=UTC)
    _refund(ctx, shop.id, 1, "failed", long_ago)          # counts, whenever logged
    _refund(ctx, shop.id, 2, "pending", long_ago)         # queued: counts
    _refund(ctx, shop.id, 3, "awaiting_payment", NOW)     # queued: counts
    _refund(ctx, shop.id, 4, "refunded", NOW)             # done
    _refund(ctx, shop.id, 5, "skipped", NOW)              # settled by the cancellation
    _refund(ctx, shop.id, 6, None, long_ago)              # by hand, outside the period
    _refund(ctx, other_shop.id, 7, "failed", NOW)         # another shop's
    doc = _stats(admin)
    assert doc["refunds"] == {"queued": 2, "failed": 1, "by_hand": 1}
    assert doc["refunds_waiting"] == 4
    assert _stats(admin, "?from=2025-01-01&to=2025-01-31")["refunds"]["by_hand"] == 1


def test_a_seated_session_counts_its_time_once(ctx: Context, admin: Admin,
                                               store: Storefront) -> None:
    cat = make_catalog(admin, duration=60)
    assert admin("PATCH", f"/services/{cat['service']}", {"seats": 3}).status_code == 200
    for n in range(2):
        _book(ctx, store, cat["service"], cat["expert"], "2026-12-01T09:00:00Z", 4000 + n,
              email=f"c{n}@example.com")
    doc = _stats(admin)
    assert _week(doc, "2026-W49")["bookings"] == 2
    assert doc["experts"][0]["booked_minutes"] == 60


def test_an_empty_shop(admin: Admin) -> None:
    doc = _stats(admin)
    assert len(doc["weeks"]) == 9 and doc["experts"] == [] and doc["today"] == []
    assert (doc["refunds_waiting"], doc["cancellations"]) == (0, 0)
    make_catalog(admin)
    admin("PUT", f"/experts/{admin('GET', '/experts').json['experts'][0]['id']}/schedule",
          {"weekly": {}, "overrides": []})
    (expert,) = _stats(admin)["experts"]
    assert (expert["offered_minutes"], expert["fill_rate"]) == (0, None)


@pytest.mark.parametrize(("query", "field"), [
    ("?from=2026-13-01", "from"),
    ("?from=yesterday", "from"),
    ("?to=2026-02-30", "to"),
    ("?from=2026-12-01&to=2026-11-01", "to"),
    ("?from=2026-01-01&to=2027-01-11", "to"),  # 55 weeks
    ("?from=0001-01-01", "from"),
    ("?to=9999-12-31", "to"),
    ("?from=2026-12-01T00:00:00Z", "from"),
])
def test_a_bad_period_is_400_naming_the_field(admin: Admin, query: str, field: str) -> None:
    r = admin("GET", "/stats" + query)
    assert r.status_code == 400, r.text
    assert r.json["error"]["code"] == "invalid_request"
    assert r.json["error"]["message"].startswith(field)


def test_53_weeks_is_the_most(admin: Admin) -> None:
    doc = _stats(admin, "?from=2026-01-01&to=2027-01-03")
    assert len(doc["weeks"]) == 53
    assert doc["weeks"][0]["week"] == "2026-W01" and doc["weeks"][-1]["week"] == "2026-W53"


def test_another_shops_token_sees_only_its_own(ctx: Context, business: dict[str, Any],
                                               client: falcon.testing.TestClient,
                                               other_shop: ShopRef) -> None:
    doc = _stats(Admin(client, ctx, other_shop.domain))
    assert doc["timezone"] == "America/New_York"
    assert sum(w["bookings"] for w in doc["weeks"]) == 1
    assert [w["revenue"] for w in doc["weeks"] if w["revenue"]] == [{"EUR": "999.00"}]
    assert len(doc["experts"]) == 1 and doc["cancellations"] == 0
    with ctx.db.read() as session:  # the business's own bookings are all there
        assert session.scalar(select(func.count()).select_from(Claim)
                              .where(Claim.order_id.is_not(None))) == 8


def test_stats_need_a_session_token(client: falcon.testing.TestClient) -> None:
    assert client.simulate_get("/admin/api/stats").status_code == 401
