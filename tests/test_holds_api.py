"""Holds through the App Proxy: the contract's order of checks (422, 429, 409), release,
expiry without the sweeper, and availability minus live claims."""

from __future__ import annotations

from typing import Any

import pytest

from engine.services.claims import sweep
from tests.conftest import Admin, Storefront, make_catalog

TUE_9 = "2026-12-01T08:00:00Z"  # Tuesday 09:00 Berlin
TUE_930 = "2026-12-01T08:30:00Z"


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)


def slots(store: Storefront, cat: dict[str, Any], day: str = "2026-12-01") -> list[str]:
    r = store.get("/availability", {"service": cat["service"], "start": day, "days": "1"})
    assert r.status_code == 200, r.text
    return [s["start"] for s in r.json["slots"]]


def test_hold_returns_id_expiry_and_cart_properties(store: Storefront, cat: dict[str, Any]
                                                    ) -> None:
    r = store.hold(cat["service"], cat["expert"], TUE_9, tz="America/New_York")
    assert r.status_code == 201, r.text
    body = r.json
    assert body["expires_at"] == "2026-11-30T12:10:00Z"
    assert body["expert"] == cat["expert"] and body["seats"] == 1
    props = body["line_item_properties"]
    assert props["_hold"] == body["hold"]
    assert props["Expert"] == "Expert 0"
    # in the customer's words and the shop's
    assert "03:00\u201303:30 (America/New_York)" in props["Appointment"]
    assert "09:00\u201309:30 (Europe/Berlin)" in props["Appointment"]
    assert props["Appointment"].startswith("Tue 1 Dec 2026")


def test_held_slot_leaves_availability_and_cannot_be_held_twice(
        store: Storefront, cat: dict[str, Any]) -> None:
    assert TUE_9 in slots(store, cat)
    assert store.hold(cat["service"], cat["expert"], TUE_9).status_code == 201
    assert TUE_9 not in slots(store, cat)
    assert TUE_930 in slots(store, cat)
    again = store.hold(cat["service"], cat["expert"], TUE_9, ip="198.51.100.1")
    assert again.status_code == 409
    assert again.json["error"]["code"] == "slot_unavailable"


def test_overlap_across_services_with_buffers_is_refused(store: Storefront, admin: Admin,
                                                         cat: dict[str, Any]) -> None:
    long = admin("POST", "/services", {"title": "Long", "duration_minutes": 60,
                                       "interval_minutes": 30,
                                       "buffer_after_minutes": 15}).json
    admin("PATCH", f"/experts/{cat['expert']}", {"services": [cat["service"], long["id"]]})
    # 09:00-10:00 + 15 min buffer claims until 10:15 Berlin
    assert store.hold(long["id"], cat["expert"], TUE_9).status_code == 201
    r = store.hold(cat["service"], cat["expert"], "2026-12-01T09:00:00Z", ip="198.51.100.2")
    assert r.status_code == 409  # 10:00 Berlin lies in the buffer
    assert store.hold(cat["service"], cat["expert"], "2026-12-01T09:30:00Z",
                      ip="198.51.100.2").status_code == 201  # 10:30 is free
    assert "2026-12-01T09:00:00Z" not in slots(store, cat)


@pytest.mark.parametrize("start", [
    "2026-12-01T08:10:00Z",  # off the grid
    "2026-12-01T07:30:00Z",  # 08:30 Berlin, before hours
    "2026-12-01T16:00:00Z",  # 17:00 Berlin, the window has ended
    "2026-12-05T09:00:00Z",  # Saturday
    "2026-11-30T08:00:00Z",  # in the past
    "2027-03-01T09:00:00Z",  # beyond max_days_ahead (60)
    "2026-12-01T08:00:00.5Z",  # not a whole second
])
def test_not_a_slot(store: Storefront, cat: dict[str, Any], start: str) -> None:
    r = store.hold(cat["service"], cat["expert"], start)
    assert r.status_code == 422, r.text
    assert r.json["error"]["code"] == "not_a_slot"


def test_visitor_limit_then_release_frees_the_quota_and_the_slot(
        store: Storefront, cat: dict[str, Any]) -> None:
    starts = ["2026-12-01T08:00:00Z", "2026-12-01T08:30:00Z", "2026-12-01T09:00:00Z"]
    ids = [store.hold(cat["service"], cat["expert"], s, customer="9").json["hold"]
           for s in starts]
    r = store.hold(cat["service"], cat["expert"], "2026-12-01T09:30:00Z", customer="9")
    assert r.status_code == 429 and r.json["error"]["code"] == "too_many_holds"
    # the limit is per visitor: another customer may hold
    assert store.hold(cat["service"], cat["expert"], "2026-12-01T09:30:00Z",
                      customer="10").status_code == 201
    assert store.release(ids[0]).status_code == 204
    assert store.release(ids[0]).status_code == 204  # twice is fine
    assert "2026-12-01T08:00:00Z" in slots(store, cat)
    assert store.hold(cat["service"], cat["expert"], "2026-12-01T10:00:00Z",
                      customer="9").status_code == 201


def test_check_order_is_422_then_429_then_409(store: Storefront, cat: dict[str, Any]) -> None:
    for s in ["2026-12-01T08:00:00Z", "2026-12-01T08:30:00Z", "2026-12-01T09:00:00Z"]:
        assert store.hold(cat["service"], cat["expert"], s, ip="192.0.2.1").status_code == 201
    # a taken slot by a visitor at the limit: 429 before 409
    assert store.hold(cat["service"], cat["expert"], "2026-12-01T08:00:00Z",
                      ip="192.0.2.1").status_code == 429
    # not a slot, at the limit: 422 first
    assert store.hold(cat["service"], cat["expert"], "2026-12-01T08:05:00Z",
                      ip="192.0.2.1").status_code == 422
    # another visitor on the taken slot: 409
    assert store.hold(cat["service"], cat["expert"], "2026-12-01T08:00:00Z",
                      ip="192.0.2.2").status_code == 409


def test_forwarded_address_identifies_the_visitor(store: Storefront, cat: dict[str, Any]
                                                 ) -> None:
    for s in ["2026-12-01T08:00:00Z", "2026-12-01T08:30:00Z", "2026-12-01T09:00:00Z"]:
        assert store.hold(cat["service"], cat["expert"], s,
                          ip="10.0.0.1, 192.0.2.9").status_code == 201
    assert store.hold(cat["service"], cat["expert"], "2026-12-01T09:30:00Z",
                      ip="192.0.2.9").status_code == 429


def test_expired_hold_never_blocks_even_before_the_sweeper(store: Storefront, ctx: Any,
                                                          cat: dict[str, Any]) -> None:
    assert store.hold(cat["service"], cat["expert"], TUE_9, ip="192.0.2.3").status_code == 201
    ctx.clock.advance(601)
    assert TUE_9 in slots(store, cat)
    r = store.hold(cat["service"], cat["expert"], TUE_9, ip="192.0.2.4")
    assert r.status_code == 201, r.text
    # the expired hold no longer counts against its visitor either
    with ctx.db.write() as session:
        assert sweep(session, ctx.clock.now()) == (0, 0)


def test_sweeper_marks_stale_holds_expired(store: Storefront, ctx: Any, cat: dict[str, Any]
                                           ) -> None:
    store.hold(cat["service"], cat["expert"], TUE_9)
    store.hold(cat["service"], cat["expert"], TUE_930)
    ctx.clock.advance(600)
    with ctx.db.write() as session:
        assert sweep(session, ctx.clock.now()) == (2, 0)
    ctx.clock.advance(31 * 86400)
    with ctx.db.write() as session:
        assert sweep(session, ctx.clock.now()) == (0, 2)


def test_release_of_another_shops_hold_is_404(store: Storefront, cat: dict[str, Any],
                                              client: Any, ctx: Any, other_shop: Any) -> None:
    hold = store.hold(cat["service"], cat["expert"], TUE_9).json["hold"]
    other = Storefront(client, ctx, other_shop.domain)
    r = other.release(hold)
    assert r.status_code == 404
    assert TUE_9 not in slots(store, cat)
    assert other.hold(cat["service"], cat["expert"], TUE_9).status_code == 404


@pytest.mark.parametrize("body,code", [
    ({"service": "x"}, "invalid_request"),
    ({"service": "a", "expert": "b", "start": "tomorrow"}, "invalid_request"),
    ({"service": "a", "expert": "b", "start": "2026-12-01T08:00:00"}, "invalid_request"),
    ({"service": "a", "expert": "b", "start": 5}, "invalid_request"),
    ({"service": "a", "expert": "b", "start": TUE_9, "extra": 1}, "invalid_request"),
    ([1, 2], "invalid_request"),
])
def test_bad_hold_requests_are_400(store: Storefront, body: Any, code: str) -> None:
    r = store.client.simulate_post("/proxy/holds", query_string=__import__(
        "tests.conftest", fromlist=["proxy_query"]).proxy_query(store.ctx, store.domain, {}),
        json=body)
    assert r.status_code == 400, r.text
    assert r.json["error"]["code"] == code


def test_unknown_service_or_expert_is_404(store: Storefront, cat: dict[str, Any]) -> None:
    assert store.hold("svc_nope", cat["expert"], TUE_9).status_code == 404
    assert store.hold(cat["service"], "exp_nope", TUE_9).status_code == 404


def test_unsigned_hold_is_401(store: Storefront, cat: dict[str, Any]) -> None:
    r = store.client.simulate_post("/proxy/holds", json={"service": cat["service"],
                                                         "expert": cat["expert"],
                                                         "start": TUE_9})
    assert r.status_code == 401
    assert r.json["error"]["code"] == "invalid_signature"


def test_a_hold_asks_for_seats_within_what_the_session_has(store: Storefront,
                                                           cat: dict[str, Any]) -> None:
    one = store.hold(cat["service"], cat["expert"], TUE_9, seats=1)
    assert one.status_code == 201 and one.json["seats"] == 1
    # A one-seat session cannot take two customers: refused, and nothing is held.
    two = store.hold(cat["service"], cat["expert"], "2026-12-01T09:30:00Z", seats=2)
    assert two.status_code == 409 and two.json["error"]["code"] == "slot_unavailable"
    assert "2026-12-01T09:30:00Z" in slots(store, cat)
    for bad in (0, -1, 1001, "1", 1.5, True, None):
        r = store.hold(cat["service"], cat["expert"], "2026-12-01T10:00:00Z", seats=bad)
        assert r.status_code == 400, (bad, r.text)


def test_answers_must_fit_the_services_questions(store: Storefront, cat: dict[str, Any]
                                                 ) -> None:
    assert store.hold(cat["service"], cat["expert"], TUE_9, answers={}).status_code == 201
    r = store.hold(cat["service"], cat["expert"], "2026-12-01T09:30:00Z",
                   answers={"topic": "taxes"})
    assert r.status_code == 422 and r.json["error"]["code"] == "invalid_answers"
    assert "topic" in r.json["error"]["message"]
    r = store.hold(cat["service"], cat["expert"], "2026-12-01T09:30:00Z", answers=["x"])
    assert r.status_code == 400
