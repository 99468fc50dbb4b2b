"""How ``expert: "any"`` spreads bookings (CONTRACT Capacity): the pure order of
engine.services.assignment, and sequences of holds booked through Shopify's webhook one
after another, on SQLite and PostgreSQL -- equal weights round robin, weights 1:3,
priorities (the next expert once the first is at a limit), an expert whose calendar is
busy, and the 30-day window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest

from engine.domain.slots import Instant
from engine.services.assignment import (
    LEAST_BOOKED,
    PRIORITY,
    BookingStats,
    Candidate,
    ranked,
)
from tests.capacity.helpers import book, cancel, set_expert, set_service
from tests.conftest import Admin, Storefront, make_catalog

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ids(order: list[Candidate]) -> list[str]:
    return [c.id for c in order]


# --------------------------------------------------------------------------- pure order


def test_least_booked_orders_by_load_then_least_recent_then_id() -> None:
    a, b, c = Candidate("a"), Candidate("b"), Candidate("c")
    assert ids(ranked(LEAST_BOOKED, [c, b, a], {})) == ["a", "b", "c"]
    stats = {"a": BookingStats(2, T0), "b": BookingStats(1, T0 + timedelta(hours=1)),
             "c": BookingStats(1, T0)}
    assert ids(ranked(LEAST_BOOKED, [a, b, c], stats)) == ["c", "b", "a"]
    # Never booked comes before any booking, whatever the ids.
    assert ids(ranked(LEAST_BOOKED, [a, b], {"a": BookingStats(0, None),
                                             "b": BookingStats(0, T0)})) == ["a", "b"]
    assert ids(ranked(LEAST_BOOKED, [a, b], {"a": BookingStats(0, T0)})) == ["b", "a"]


def test_weight_divides_the_count_exactly() -> None:
    light, heavy = Candidate("a", weight=1), Candidate("b", weight=3)
    # 3/3 and 1/1 tie (exactly): the least recently booked goes first.
    stats = {"a": BookingStats(1, T0), "b": BookingStats(3, T0 + timedelta(minutes=1))}
    assert ids(ranked(LEAST_BOOKED, [heavy, light], stats)) == ["a", "b"]
    stats = {"a": BookingStats(1, T0 + timedelta(minutes=1)), "b": BookingStats(2, T0)}
    assert ids(ranked(LEAST_BOOKED, [light, heavy], stats)) == ["b", "a"]
    # Weights 1 and 6: 1/6 + 1/6 ... compare as fractions, not floats.
    six = Candidate("c", weight=6)
    assert ids(ranked(LEAST_BOOKED, [six, light], {"c": BookingStats(6, T0),
                                                   "a": BookingStats(1, T0)})) == ["a", "c"]


def test_priority_first_then_least_booked() -> None:
    hi, mid1, mid2 = Candidate("z", priority=90), Candidate("a", 50), Candidate("b", 50)
    stats = {"z": BookingStats(9, T0), "a": BookingStats(2, T0), "b": BookingStats(1, T0)}
    assert ids(ranked(PRIORITY, [mid1, mid2, hi], stats)) == ["z", "b", "a"]
    # least_booked ignores priority altogether.
    assert ids(ranked(LEAST_BOOKED, [mid1, mid2, hi], stats)) == ["b", "a", "z"]
    # An unknown assignment is the default.
    assert ids(ranked("whatever", [mid1, mid2, hi], stats)) == ["b", "a", "z"]


# --------------------------------------------------------------------------- sequences


class Sequence:
    """Book ``expert: "any"`` one after another, each at its own start on Tuesday (every
    expert free there), a minute apart; returns who got each, as expert indexes."""

    def __init__(self, store: Storefront, ctx: Any, cat: dict[str, Any]) -> None:
        self.store, self.ctx, self.cat = store, ctx, cat
        self.index = {e: n for n, e in enumerate(sorted(cat["experts"]))}
        self.orders = count(100)
        self.slots = (f"2026-12-{day:02d}T{8 + m // 60:02d}:{m % 60:02d}:00Z"
                      for day in (1, 2, 3) for m in range(0, 480, 30))
        self.booked: list[tuple[str, int]] = []

    def __call__(self, n: int, *, pay: bool = True) -> list[int]:
        got = []
        for _ in range(n):
            self.ctx.clock.advance(60)
            start = next(self.slots)
            r = self.store.hold(self.cat["service"], "any", start,
                                customer=f"c{len(self.booked)}-{start}")
            assert r.status_code == 201, r.text
            order = next(self.orders)
            book(self.store, r.json["hold"], order,
                 financial_status="paid" if pay else "pending")
            self.booked.append((r.json["hold"], order))
            got.append(self.index[r.json["expert"]])
        return got


def test_equal_weights_go_round(store: Storefront, admin: Admin, ctx: Any) -> None:
    cat = make_catalog(admin, experts=3)
    run = Sequence(store, ctx, cat)
    assert run(7) == [0, 1, 2, 0, 1, 2, 0]
    # Pending bookings count as much as confirmed ones.
    assert run(2, pay=False) == [1, 2]
    assert run(1) == [0]


def test_weights_one_to_three(store: Storefront, admin: Admin, ctx: Any) -> None:
    cat = make_catalog(admin, experts=2)
    set_expert(ctx, sorted(cat["experts"])[1], weight=3)
    got = Sequence(store, ctx, cat)(16)
    assert got == [0, 1, 1, 1, 0, 1, 1, 1] * 2
    assert got.count(1) == 3 * got.count(0)


def test_priorities_then_the_next_when_the_first_is_at_a_limit(store: Storefront,
                                                                admin: Admin, ctx: Any
                                                                ) -> None:
    cat = make_catalog(admin, experts=3)
    e = sorted(cat["experts"])
    set_service(ctx, cat["service"], assignment="priority")
    set_expert(ctx, e[2], priority=80, limits={"day": 2})
    set_expert(ctx, e[0], priority=10)
    # The favourite takes two, then is at its day limit: the others (priority 50 and 10)
    # in priority order, the 50 first every time.
    run = Sequence(store, ctx, cat)
    assert run(4) == [2, 2, 1, 1]
    # Equal priorities share as least_booked does.
    set_expert(ctx, e[0], priority=50)
    assert run(3) == [0, 0, 1]


def test_a_busy_expert_is_passed_over_and_catches_up(store: Storefront, admin: Admin,
                                                     ctx: Any) -> None:
    cat = make_catalog(admin, experts=3)
    e = sorted(cat["experts"])
    busy: set[str] = set()

    def calendar(_s: Any, _shop: str, experts: Any, a: Instant, b: Instant
                 ) -> dict[str, list[tuple[Instant, Instant]]]:
        return {x: [(a, b)] for x in experts if x in busy}

    ctx.busy_source = calendar
    run = Sequence(store, ctx, cat)
    assert run(1) == [0]
    busy.add(e[1])  # the second expert's own calendar is full for a while
    assert run(2) == [2, 0]
    busy.clear()
    assert run(3) == [1, 2, 1]


def test_an_expert_already_held_at_that_time_is_passed_over(store: Storefront, admin: Admin,
                                                            ctx: Any) -> None:
    cat = make_catalog(admin, experts=2)
    first, second = sorted(cat["experts"])
    assert store.hold(cat["service"], first, "2026-12-01T08:00:00Z",
                      customer="x").status_code == 201
    r = store.hold(cat["service"], "any", "2026-12-01T08:00:00Z", customer="y")
    assert r.json["expert"] == second


def test_cancelled_bookings_and_bookings_older_than_30_days_do_not_count(
        store: Storefront, admin: Admin, ctx: Any) -> None:
    cat = make_catalog(admin, experts=2)
    run = Sequence(store, ctx, cat)
    assert run(3) == [0, 1, 0]
    hold, order = run.booked[1]
    cancel(store, hold, order)  # the second expert's only booking
    assert run(2) == [1, 1]  # 2 against 0, then 2 against 1
    # A month later those bookings no longer count: both are "never booked" again.
    ctx.clock.advance(31 * 24 * 3600)
    run.slots = iter([f"2027-01-04T{h:02d}:00:00Z" for h in range(8, 16)])
    assert run(2) == [0, 1]


@pytest.mark.parametrize("assignment", ["least_booked", "priority"])
def test_assignment_never_changes_who_can_take_it(store: Storefront, admin: Admin, ctx: Any,
                                                  assignment: str) -> None:
    """Whatever the order, a start with one free expert goes to that expert."""
    cat = make_catalog(admin, experts=3)
    e = sorted(cat["experts"])
    set_service(ctx, cat["service"], assignment=assignment)
    for n, x in enumerate(e[:2]):
        assert store.hold(cat["service"], x, "2026-12-01T08:00:00Z",
                          customer=f"x{n}").status_code == 201
    r = store.hold(cat["service"], "any", "2026-12-01T08:00:00Z", customer="y")
    assert r.status_code == 201 and r.json["expert"] == e[2]
