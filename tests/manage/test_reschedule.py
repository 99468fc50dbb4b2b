"""Rescheduling: the same booking at its new time, in one transaction that the database
decides (overlap, seats, limits); the old time free at once; reminders follow; the
merchant may ignore notice and horizon, never an overlap. Races run real processes."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from engine.bootstrap import Context
from engine.store.models import LIVE_STATUSES, Claim, OutboxItem, Reminder
from tests.conftest import Admin, Storefront, make_catalog
from tests.manage.helpers import (
    THU_9,
    THU_10,
    WED_9,
    WED_10,
    WED_11,
    Customer,
    book,
    claim_of,
    token,
)


def _at(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def test_reschedule_moves_the_booking(admin: Admin, store: Storefront, ctx: Context,
                                      customer: Customer) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    tok = token(ctx, bid)
    before = claim_of(ctx, bid)
    r = customer.reschedule(bid, tok, THU_10)
    assert r.status_code == 200, r.text
    b = r.json["booking"]
    assert (b["id"], b["start"], b["end"], b["status"]) == (
        bid, THU_10, "2026-12-03T09:30:00Z", "confirmed")
    after = claim_of(ctx, bid)
    assert after.sequence == before.sequence + 1 and after.reschedules == 1
    assert (after.claim_start, after.claim_end) == (_at(THU_10), _at("2026-12-03T09:30:00Z"))
    # The old time is free at once; the new one is taken.
    assert store.hold(cat["service"], cat["expert"], WED_9).status_code == 201
    assert store.hold(cat["service"], cat["expert"], THU_10).json["error"]["code"] == \
        "slot_unavailable"
    with ctx.db.read() as s:
        items = s.scalars(select(OutboxItem).where(OutboxItem.booking_id == bid,
                                                   OutboxItem.kind == "booking.rescheduled")
                          ).all()
        reminders = {r.offset_minutes: (r.due_at, r.status) for r in
                     s.scalars(select(Reminder).where(Reminder.booking_id == bid))}
    assert [i.payload for i in items] == [{"sequence": after.sequence, "from": {
        "start": WED_9, "end": "2026-12-02T08:30:00Z", "expert": cat["expert"]}}]
    assert reminders == {1440: (_at("2026-12-02T09:00:00Z"), "pending"),
                         60: (_at("2026-12-03T08:00:00Z"), "pending")}
    # The link keeps working, and asking for the time it has changes nothing.
    r = customer.reschedule(bid, tok, THU_10)
    assert r.status_code == 200 and claim_of(ctx, bid).sequence == after.sequence


def test_a_taken_time_is_409_and_the_booking_keeps_its_time(
        admin: Admin, store: Storefront, ctx: Context, customer: Customer) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    book(store, cat, WED_10, order_id=1002, customer_id=78)
    held = store.hold(cat["service"], cat["expert"], WED_11)
    assert held.status_code == 201
    tok = token(ctx, bid)
    for taken in (WED_10, WED_11):
        r = customer.reschedule(bid, tok, taken)
        assert (r.status_code, r.json["error"]["code"]) == (409, "slot_unavailable")
        c = claim_of(ctx, bid)
        assert (c.start_at, c.reschedules, c.status) == (_at(WED_9), 0, "confirmed")
    # Not a slot: off the grid, outside the hours, in the past, not the booking's shape.
    for start in ("2026-12-02T08:10:00Z", "2026-12-05T08:00:00Z", "2026-11-30T08:00:00Z",
                  "2026-12-02T16:00:00Z"):
        r = customer.reschedule(bid, tok, start)
        assert (r.status_code, r.json["error"]["code"]) == (422, "not_a_slot"), start
    # Malformed bodies are 400s.
    for body in ({"token": tok}, {"token": tok, "start": "tomorrow"},
                 {"token": tok, "start": THU_9, "nope": 1}, {"token": tok, "start": THU_9,
                                                              "expert": 5}):
        r = customer.client.simulate_post(f"/proxy/bookings/{bid}/reschedule",
                                          query_string=customer._qs(), json=body)
        assert r.status_code == 400, (body, r.text)
    assert claim_of(ctx, bid).start_at == _at(WED_9)


def test_an_overlapping_move_of_its_own_time(admin: Admin, store: Storefront, ctx: Context,
                                            customer: Customer) -> None:
    """Moving by less than its length overlaps only itself: allowed."""
    cat = make_catalog(admin, duration=60)
    admin("PATCH", f"/services/{cat['service']}", {"interval_minutes": 30})
    bid = book(store, cat, WED_9, order_id=1001)
    r = customer.reschedule(bid, token(ctx, bid), "2026-12-02T08:30:00Z")
    assert r.status_code == 200, r.text


def test_another_expert_or_any(admin: Admin, store: Storefront, ctx: Context,
                               customer: Customer) -> None:
    cat = make_catalog(admin, experts=2)
    bid = book(store, cat, WED_9, order_id=1001)
    book(store, cat, THU_9, order_id=1002, customer_id=78)  # expert 0 is busy then
    tok = token(ctx, bid)
    r = customer.reschedule(bid, tok, THU_9, expert="any")
    assert r.status_code == 200, r.text
    assert r.json["booking"]["expert"] == cat["experts"][1]
    r = customer.reschedule(bid, tok, WED_9, expert="bk_nobody")
    assert r.status_code == 404
    r = customer.reschedule(bid, tok, THU_10, expert=cat["experts"][0])
    assert r.status_code == 200 and r.json["booking"]["expert"] == cat["experts"][0]


def test_into_a_seated_session_and_over_a_limit(admin: Admin, store: Storefront,
                                               ctx: Context, customer: Customer) -> None:
    cat = make_catalog(admin)
    assert admin("PATCH", f"/services/{cat['service']}",
                 {"seats": 2, "limits": {"day": 2}}).status_code == 200
    a = book(store, cat, WED_9, order_id=1001, customer_id=1)
    b = book(store, cat, WED_10, order_id=1002, customer_id=2)
    c = book(store, cat, THU_9, order_id=1003, customer_id=3)
    # c joins a's session (a seat is free): allowed, and the sessions share the time.
    r = customer.reschedule(c, token(ctx, c), WED_9)
    assert r.status_code == 200, r.text
    # Wednesday has two sessions (the limit); a third start that day is over it.
    d = book(store, cat, THU_10, order_id=1004, customer_id=4)
    r = customer.reschedule(d, token(ctx, d), WED_11)
    assert (r.status_code, r.json["error"]["code"]) == (409, "limit_reached")
    # a's session is full now (a and c).
    r = customer.reschedule(d, token(ctx, d), WED_9)
    assert (r.status_code, r.json["error"]["code"]) == (409, "slot_unavailable")
    # Into b's session: a seat is free there.
    assert customer.reschedule(d, token(ctx, d), WED_10).status_code == 200
    assert claim_of(ctx, d).start_at == _at(WED_10)
    del a, b


def test_the_merchant_ignores_notice_and_horizon_but_not_overlap(
        admin: Admin, store: Storefront, ctx: Context, customer: Customer) -> None:
    cat = make_catalog(admin)
    admin("PATCH", f"/services/{cat['service']}", {"min_notice_minutes": 3 * 1440,
                                                   "max_days_ahead": 10})
    ctx.clock.set(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))  # type: ignore[attr-defined]
    bid = book(store, cat, THU_9, order_id=1001)
    other = book(store, cat, "2026-12-03T10:00:00Z", order_id=1002, customer_id=78)
    ctx.clock.set(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))  # type: ignore[attr-defined]
    soon, far = "2026-12-01T08:00:00Z", "2026-12-18T09:00:00Z"
    policy_off = customer.reschedule(bid, token(ctx, bid), soon)
    assert (policy_off.status_code, policy_off.json["error"]["code"]) == (422, "not_a_slot")
    r = admin("POST", f"/bookings/{bid}/reschedule", {"start": soon})
    assert r.status_code == 200, r.text
    assert r.json["booking"]["start"] == soon and r.json["booking"]["id"] == bid
    assert admin("POST", f"/bookings/{bid}/reschedule", {"start": far}).status_code == 200
    assert claim_of(ctx, bid).reschedules == 0  # the merchant's moves are not the customer's
    r = admin("POST", f"/bookings/{bid}/reschedule", {"start": "2026-12-03T10:00:00Z"})
    assert (r.status_code, r.json["error"]["code"]) == (409, "slot_unavailable")
    r = admin("POST", f"/bookings/{bid}/reschedule", {"start": "2026-12-05T10:00:00Z"})
    assert (r.status_code, r.json["error"]["code"]) == (422, "not_a_slot")  # a Saturday
    assert claim_of(ctx, bid).start_at == _at(far)
    del other


def test_another_shops_merchant_gets_404(admin: Admin, store: Storefront, ctx: Context,
                                         other_admin: Admin) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    assert other_admin("POST", f"/bookings/{bid}/reschedule",
                       {"start": THU_9}).status_code == 404


# --------------------------------------------------------------------------- races


def _race(db_url: str, domain: str, jobs: list[tuple[str, Any]], seed: int,
          barrier: Any, out: Any) -> None:
    import falcon.testing

    from engine.bootstrap import bootstrap
    from engine.clock import FixedClock
    from tests.conftest import NOW, make_config, proxy_query
    from web.app import create_app

    ctx = bootstrap(make_config(db_url), clock=FixedClock(NOW))
    client = falcon.testing.TestClient(create_app(ctx))
    kind, args = jobs[seed]
    qs = proxy_query(ctx, domain, {})
    barrier.wait(timeout=60)
    if kind == "reschedule":
        booking, tok, start = args
        r = client.simulate_post(f"/proxy/bookings/{booking}/reschedule", query_string=qs,
                                 json={"token": tok, "start": start})
    else:
        service, expert, start = args
        r = client.simulate_post("/proxy/holds", query_string=qs,
                                 json={"service": service, "expert": expert, "start": start},
                                 headers={"X-Forwarded-For": f"192.0.2.{seed + 1}"})
    body = r.json if isinstance(r.json, dict) else {}
    out.put((seed, r.status_code, body.get("error", {}).get("code")))
    ctx.db.dispose()


def _run(db_url: str, jobs: list[tuple[str, Any]]) -> dict[int, tuple[int, str | None]]:
    mp = multiprocessing.get_context("spawn")
    barrier, out = mp.Barrier(len(jobs)), mp.Queue()
    procs = [mp.Process(target=_race, args=(db_url, "alpha.myshopify.com", jobs, n,
                                            barrier, out)) for n in range(len(jobs))]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return {seed: (status, code) for seed, status, code in results}


def _live_at(ctx: Context, expert: str, start: str) -> list[str]:
    with ctx.db.read() as s:
        return list(s.scalars(select(Claim.id).where(Claim.expert_id == expert,
                                                     Claim.start_at == _at(start),
                                                     Claim.status.in_(LIVE_STATUSES))))


@pytest.mark.slow
def test_two_customers_rescheduling_into_one_free_time(admin: Admin, store: Storefront,
                                                       ctx: Context, db_url: str) -> None:
    cat = make_catalog(admin)
    mine = [book(store, cat, start, order_id=1001 + n, customer_id=n)
            for n, start in enumerate((WED_9, WED_10, WED_11, THU_9))]
    jobs = [("reschedule", (b, token(ctx, b), THU_10)) for b in mine]
    results = _run(db_url, jobs)
    assert sorted(results.values()) == [(200, None)] + [(409, "slot_unavailable")] * 3
    winner = next(n for n, (status, _) in results.items() if status == 200)
    assert _live_at(ctx, cat["expert"], THU_10) == [mine[winner]]
    for n, b in enumerate(mine):
        c = claim_of(ctx, b)
        if n != winner:  # the others keep their time
            assert (c.start_at, c.reschedules, c.status) == (
                _at((WED_9, WED_10, WED_11, THU_9)[n]), 0, "confirmed")


@pytest.mark.slow
def test_a_reschedule_racing_new_holds(admin: Admin, store: Storefront, ctx: Context,
                                       db_url: str) -> None:
    cat = make_catalog(admin)
    bid = book(store, cat, WED_9, order_id=1001)
    jobs: list[tuple[str, Any]] = [("reschedule", (bid, token(ctx, bid), THU_10))]
    jobs += [("hold", (cat["service"], cat["expert"], THU_10)) for _ in range(3)]
    results = _run(db_url, jobs)
    # One of the four takes the time: the reschedule (200) or one hold (201).
    assert sorted(s for s, _ in results.values()) in ([200, 409, 409, 409],
                                                      [201, 409, 409, 409])
    live = _live_at(ctx, cat["expert"], THU_10)
    assert len(live) == 1
    c = claim_of(ctx, bid)
    if results[0][0] == 200:
        assert live == [bid]
    else:
        assert results[0] == (409, "slot_unavailable")
        assert (c.start_at, c.reschedules) == (_at(WED_9), 0) and live != [bid]
