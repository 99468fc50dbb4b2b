"""`GET /proxy/availability` with seats and limits, on both databases: what holds take
and give back shows at once (``seats_left``), a full session is gone, a one-to-one service
never overlaps a session, limits close the rest of a local day / ISO week / month of the
expert's own zone for that expert only (existing sessions with seats still show), and
``expert=any`` counts what is left.

Seats and limits are set on the rows directly (the catalog's validation is tested with
the admin API); the holds go through the App Proxy.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from engine.bootstrap import Context
from engine.store.models import Expert, Service
from tests.conftest import WEEKDAYS_9_17, Admin, Storefront

TUE = "2026-12-01"  # NOW is Monday 2026-11-30 12:00Z; the shop is in Europe/Berlin
TUE_9 = "2026-12-01T08:00:00Z"  # 09:00 Berlin
TUE_10 = "2026-12-01T09:00:00Z"
TUE_11 = "2026-12-01T10:00:00Z"
WED_9 = "2026-12-02T08:00:00Z"
_IPS = (f"198.51.100.{n}" for n in itertools.count(1))


def capacity(ctx: Context, *, service: str | None = None, expert: str | None = None,
             seats: int | None = None, limits: dict[str, int] | None = None) -> None:
    """Set seats / limits on the rows (a write: the process's read cache is void)."""
    with ctx.db.write() as session:
        if service is not None:
            row = session.get(Service, service)
            assert row is not None
            if seats is not None:
                row.seats = seats
            if limits is not None:
                row.limits = limits
        if expert is not None:
            e = session.get(Expert, expert)
            assert e is not None
            e.limits = limits


def catalog(admin: Admin, *, experts: int = 1, duration: int = 60,
            timezone: str | None = None, title: str = "Workshop") -> dict[str, Any]:
    svc = admin("POST", "/services", {"title": title, "duration_minutes": duration,
                                      "max_days_ahead": 90}).json["id"]
    ids = []
    for n in range(experts):
        body: dict[str, Any] = {"name": f"Expert {n}", "services": [svc]}
        if timezone:
            body["timezone"] = timezone
        e = admin("POST", "/experts", body).json["id"]
        admin("PUT", f"/experts/{e}/schedule", {"weekly": WEEKDAYS_9_17})
        ids.append(e)
    return {"service": svc, "experts": sorted(ids), "expert": sorted(ids)[0]}


def avail(store: Storefront, service: str, start: str = TUE, days: int = 1,
          **extra: str) -> list[dict[str, Any]]:
    r = store.get("/availability", {"service": service, "start": start, "days": str(days),
                                    **extra})
    assert r.status_code == 200, r.text
    return list(r.json["slots"])


def by_start(slots: list[dict[str, Any]], expert: str | None = None) -> dict[str, Any]:
    return {s["start"]: s for s in slots if expert is None or s["expert"] == expert}


def hold(store: Storefront, service: str, expert: str, start: str, seats: int = 1) -> str:
    r = store.hold(service, expert, start, seats=seats, ip=next(_IPS))
    assert r.status_code == 201, r.text
    return str(r.json["hold"])


# --------------------------------------------------------------------------- seats


def test_seats_left_follows_holds_release_and_expiry(store: Storefront, admin: Admin,
                                                     ctx: Context, clock: Any) -> None:
    cat = catalog(admin)
    capacity(ctx, service=cat["service"], seats=3)
    slots = by_start(avail(store, cat["service"]))
    assert slots[TUE_10]["seats_left"] == 3 and slots[TUE_9]["seats_left"] == 3
    first = hold(store, cat["service"], cat["expert"], TUE_10)
    assert by_start(avail(store, cat["service"]))[TUE_10]["seats_left"] == 2
    clock.advance(300)
    second = hold(store, cat["service"], cat["expert"], TUE_10, seats=2)
    slots = by_start(avail(store, cat["service"]))
    assert TUE_10 not in slots  # full: busy like any claim
    assert slots[TUE_9]["seats_left"] == 3 and slots[TUE_11]["seats_left"] == 3
    assert store.release(second).status_code == 204
    assert by_start(avail(store, cat["service"]))[TUE_10]["seats_left"] == 2
    clock.advance(301)  # the first hold's ten minutes are over; no sweeper ran
    assert by_start(avail(store, cat["service"]))[TUE_10]["seats_left"] == 3
    del first


def test_one_seat_service_has_no_seats_left_field(store: Storefront, admin: Admin) -> None:
    cat = catalog(admin)
    assert all("seats_left" not in s for s in avail(store, cat["service"]))


def test_a_one_to_one_service_of_the_same_expert_never_overlaps_a_session(
        store: Storefront, admin: Admin, ctx: Context) -> None:
    cat = catalog(admin)
    capacity(ctx, service=cat["service"], seats=4)
    call = admin("POST", "/services", {"title": "Call", "duration_minutes": 30}).json["id"]
    admin("PATCH", f"/experts/{cat['expert']}", {"services": [cat["service"], call]})
    hold(store, cat["service"], cat["expert"], TUE_10)
    calls = [s["start"] for s in avail(store, call)]
    assert "2026-12-01T09:00:00Z" not in calls and "2026-12-01T09:30:00Z" not in calls
    assert "2026-12-01T08:30:00Z" in calls and "2026-12-01T10:00:00Z" in calls
    # ... while the session itself can still be joined, and a call blocks a session.
    assert by_start(avail(store, cat["service"]))[TUE_10]["seats_left"] == 3
    hold(store, call, cat["expert"], "2026-12-01T10:30:00Z")
    slots = by_start(avail(store, cat["service"]))
    assert TUE_11 not in slots and slots[TUE_10]["seats_left"] == 3


def test_other_experts_sessions_do_not_count(store: Storefront, admin: Admin,
                                             ctx: Context) -> None:
    cat = catalog(admin, experts=2)
    a, b = cat["experts"]
    capacity(ctx, service=cat["service"], seats=2)
    hold(store, cat["service"], a, TUE_10, seats=2)
    slots = avail(store, cat["service"])
    assert TUE_10 not in by_start(slots, a)
    assert by_start(slots, b)[TUE_10]["seats_left"] == 2


# --------------------------------------------------------------------------- limits


def test_day_limit_closes_the_rest_of_that_day_for_that_expert_only(
        store: Storefront, admin: Admin, ctx: Context) -> None:
    cat = catalog(admin, experts=2)
    a, b = cat["experts"]
    capacity(ctx, service=cat["service"], limits={"day": 2})
    hold(store, cat["service"], a, TUE_9)
    assert len(by_start(avail(store, cat["service"]), a)) == 7  # 8 starts, one held
    hold(store, cat["service"], a, TUE_11)
    slots = avail(store, cat["service"], days=2)
    assert [s["start"] for s in slots if s["expert"] == a] == [
        f"2026-12-02T{h:02d}:00:00Z" for h in range(8, 16)]  # Wednesday is open
    assert len([s for s in slots if s["expert"] == b]) == 16
    # A cancelled hold gives the session back to the day.
    # (released at once: the counter follows the claim's status)


def test_released_and_expired_holds_reopen_a_closed_day(store: Storefront, admin: Admin,
                                                        ctx: Context, clock: Any) -> None:
    cat = catalog(admin)
    capacity(ctx, service=cat["service"], limits={"day": 1})
    h = hold(store, cat["service"], cat["expert"], TUE_9)
    assert [s["start"] for s in avail(store, cat["service"])] == []
    assert store.release(h).status_code == 204
    assert len(avail(store, cat["service"])) == 8
    hold(store, cat["service"], cat["expert"], TUE_10)
    assert avail(store, cat["service"]) == []
    clock.advance(601)  # expired, not yet swept: the counter still counts it
    assert len(avail(store, cat["service"])) == 8
    hold(store, cat["service"], cat["expert"], TUE_11)  # the writer expires it first
    assert avail(store, cat["service"]) == []


def test_sessions_with_seats_still_show_in_a_closed_day(store: Storefront, admin: Admin,
                                                        ctx: Context) -> None:
    cat = catalog(admin)
    capacity(ctx, service=cat["service"], seats=3, limits={"day": 1})
    hold(store, cat["service"], cat["expert"], TUE_10)
    slots = avail(store, cat["service"], days=2)
    tuesday = [s for s in slots if s["start"].startswith(TUE)]
    assert [(s["start"], s["seats_left"]) for s in tuesday] == [(TUE_10, 2)]
    assert by_start(slots)[WED_9]["seats_left"] == 3


def test_week_and_month_limits_and_the_expert_limit_across_services(
        store: Storefront, admin: Admin, ctx: Context) -> None:
    cat = catalog(admin)
    capacity(ctx, service=cat["service"], limits={"week": 2})
    hold(store, cat["service"], cat["expert"], TUE_9)
    hold(store, cat["service"], cat["expert"], WED_9)
    # ISO week 49 (Mon 30 Nov - Sun 6 Dec) is closed; Monday 7 December is open.
    slots = avail(store, cat["service"], days=7)
    assert {s["start"][:10] for s in slots} == {"2026-12-07"}
    capacity(ctx, service=cat["service"], limits={"month": 3})
    hold(store, cat["service"], cat["expert"], "2026-12-03T08:00:00Z")
    slots = avail(store, cat["service"], start="2026-12-28", days=8)  # to Mon 4 Jan
    assert {s["start"][:10] for s in slots} == {"2027-01-01", "2027-01-04"}
    # The expert's own limit counts every service of theirs.
    capacity(ctx, service=cat["service"], limits={})
    call = admin("POST", "/services", {"title": "Call", "duration_minutes": 30}).json["id"]
    admin("PATCH", f"/experts/{cat['expert']}", {"services": [cat["service"], call]})
    capacity(ctx, expert=cat["expert"], limits={"day": 4})
    assert len(avail(store, call, start="2026-12-02")) == 14  # 16 starts, 09:00 taken
    hold(store, call, cat["expert"], "2026-12-02T12:00:00Z")
    hold(store, call, cat["expert"], "2026-12-02T13:00:00Z")
    hold(store, cat["service"], cat["expert"], "2026-12-02T14:00:00Z")
    assert avail(store, call, start="2026-12-02") == []
    assert avail(store, cat["service"], start="2026-12-02") == []
    assert len(avail(store, call, start="2026-12-04")) == 16


def test_limits_are_counted_in_the_experts_zone(store: Storefront, admin: Admin,
                                                ctx: Context) -> None:
    # Auckland is UTC+13 in December: 09:00-17:00 there is 20:00-04:00Z the day before,
    # i.e. 21:00-05:00 in the shop's Berlin: one Auckland day spans two shop days.
    cat = catalog(admin, timezone="Pacific/Auckland")
    capacity(ctx, service=cat["service"], limits={"day": 1})
    wed_auckland_9 = "2026-12-01T20:00:00Z"  # Wednesday 2 December 09:00 in Auckland
    hold(store, cat["service"], cat["expert"], wed_auckland_9)
    slots = [s["start"] for s in avail(store, cat["service"], start=TUE, days=3)]
    # Auckland Wednesday is closed (20:00Z Tue .. 03:00Z Wed starts) but Auckland
    # Tuesday (before 04:00Z Tue) and Thursday (from 20:00Z Wed) are not.
    assert not [s for s in slots if "2026-12-01T20:00:00Z" <= s < "2026-12-02T04:00:00Z"]
    assert "2026-12-01T03:00:00Z" in slots  # Tuesday 16:00 Auckland (Tuesday 04:00 Berlin)
    assert "2026-12-02T20:00:00Z" in slots  # Thursday 09:00 Auckland


def test_any_with_limits_and_seats(store: Storefront, admin: Admin, ctx: Context) -> None:
    cat = catalog(admin, experts=2)
    a, b = cat["experts"]
    capacity(ctx, service=cat["service"], seats=3, limits={"day": 1})
    hold(store, cat["service"], a, TUE_10, seats=2)
    slots = by_start(avail(store, cat["service"], expert="any"))
    assert set(slots) == {f"2026-12-01T{h:02d}:00:00Z" for h in range(8, 16)}
    assert all(s["expert"] == "any" for s in slots.values())
    # 10:00: a's session (1 left) and b (3 for a new session): the most one hold can take.
    assert slots[TUE_10]["experts_free"] == 2 and slots[TUE_10]["seats_left"] == 3
    # Elsewhere only b: a's day is closed.
    assert slots[TUE_9]["experts_free"] == 1 and slots[TUE_9]["seats_left"] == 3
    hold(store, cat["service"], b, TUE_11)
    slots = by_start(avail(store, cat["service"], expert="any"))
    assert set(slots) == {TUE_10, TUE_11}
    assert (slots[TUE_10]["experts_free"], slots[TUE_10]["seats_left"]) == (1, 1)
    assert (slots[TUE_11]["experts_free"], slots[TUE_11]["seats_left"]) == (1, 2)


@pytest.mark.parametrize("seats", [1, 5])
def test_a_limit_without_any_claim_hides_nothing(store: Storefront, admin: Admin,
                                                 ctx: Context, seats: int) -> None:
    cat = catalog(admin)
    capacity(ctx, service=cat["service"], seats=seats, limits={"day": 1, "week": 1,
                                                               "month": 1})
    assert len(avail(store, cat["service"], days=4)) == 8 * 4  # Tuesday to Friday
