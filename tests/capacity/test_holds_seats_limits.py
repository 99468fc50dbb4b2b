"""Holds with seats, limits, answers and ``expert: "any"`` through the App Proxy, and the
order line's quantity against a seated hold through Shopify's webhooks, on SQLite and
PostgreSQL. After each story the database's counters are checked to be exact
(tests/capacity/helpers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.services.capacity import EXPERT_SCOPE
from tests.capacity.helpers import (
    assert_counters_exact,
    book,
    counter,
    live_claims,
    seats_used,
    set_expert,
    set_service,
)
from tests.conftest import WEEKDAYS_9_17, Admin, Storefront, make_catalog

TUE_9 = "2026-12-01T08:00:00Z"  # Tuesday 09:00 Berlin; the clock starts Monday 12:00Z
TUE_930 = "2026-12-01T08:30:00Z"
TUE_10 = "2026-12-01T09:00:00Z"
WED_9 = "2026-12-02T08:00:00Z"
TOPIC = {"id": "topic", "label": "Topic", "type": "text", "required": True}


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin, experts=2)


def hold(store: Storefront, cat: dict[str, Any], start: str = TUE_9, *, expert: str | None = None,
         who: str = "a", **body: Any) -> Any:
    return store.hold(cat["service"], expert or cat["expert"], start, customer=who, **body)


def seats_left(store: Storefront, cat: dict[str, Any], start: str = TUE_9,
               expert: str | None = None) -> int | None:
    """The ``seats_left`` availability shows at ``start`` for the expert; None: not offered."""
    r = store.get("/availability", {"service": cat["service"], "start": start[:10],
                                    "days": "1"})
    assert r.status_code == 200, r.text
    return next((s["seats_left"] for s in r.json["slots"]
                 if s["start"] == start and s["expert"] == (expert or cat["expert"])), None)


def code(r: Any) -> tuple[int, str | None]:
    return r.status_code, (r.json.get("error", {}).get("code") if r.status_code >= 400 else None)


# --------------------------------------------------------------------------- seats


def test_a_session_takes_up_to_its_seats(store: Storefront, ctx: Any, cat: dict[str, Any]
                                         ) -> None:
    set_service(ctx, cat["service"], seats=3)
    two = hold(store, cat, seats=2, who="a")
    assert two.status_code == 201 and two.json["seats"] == 2
    assert code(hold(store, cat, seats=2, who="b")) == (409, "slot_unavailable")
    one = hold(store, cat, seats=1, who="c")
    assert one.status_code == 201 and one.json["seats"] == 1
    assert code(hold(store, cat, seats=1, who="d")) == (409, "slot_unavailable")
    [c1, c2] = live_claims(ctx)
    assert c1.session_key == c2.session_key and seats_used(ctx, c1.session_key) == 3
    assert_counters_exact(ctx)
    # One session whatever its seats: the day's counters count it once.
    assert counter(ctx, cat["expert"], cat["service"], "D2026-12-01")[0] == 1
    # Releasing the two-seat hold gives both seats back at once.
    assert store.release(two.json["hold"]).status_code == 204
    assert seats_used(ctx, c1.session_key) == 1
    assert hold(store, cat, seats=2, who="b").status_code == 201
    assert_counters_exact(ctx)


def test_more_seats_than_the_service_has_are_refused(store: Storefront, ctx: Any,
                                                     cat: dict[str, Any]) -> None:
    set_service(ctx, cat["service"], seats=3)
    assert code(hold(store, cat, seats=4)) == (409, "slot_unavailable")
    assert live_claims(ctx) == []
    assert_counters_exact(ctx)
    # A one-to-one service has one seat.
    set_service(ctx, cat["service"], seats=1)
    assert code(hold(store, cat, seats=2)) == (409, "slot_unavailable")
    assert hold(store, cat, seats=1).json["seats"] == 1


def test_no_other_claim_of_the_expert_overlaps_a_session(store: Storefront, admin: Admin,
                                                         ctx: Any, cat: dict[str, Any]
                                                         ) -> None:
    set_service(ctx, cat["service"], seats=3)
    solo = admin("POST", "/services", {"title": "Solo", "duration_minutes": 30,
                                       "interval_minutes": 15}).json["id"]
    admin("PATCH", f"/experts/{cat['expert']}", {"services": [cat["service"], solo]})
    assert hold(store, cat, who="a").status_code == 201  # the session [09:00, 09:30)
    for start in (TUE_9, "2026-12-01T08:15:00Z"):
        r = store.hold(solo, cat["expert"], start, customer="s")
        assert code(r) == (409, "slot_unavailable"), start
    # Joining the session is fine, and time next to it too.
    assert hold(store, cat, who="b").status_code == 201
    assert store.hold(solo, cat["expert"], TUE_930, customer="s").status_code == 201
    # And the other way round: a one-to-one claim keeps a session from starting over it.
    assert code(hold(store, cat, TUE_930, who="c")) == (409, "slot_unavailable")
    assert_counters_exact(ctx)


# --------------------------------------------------------------------------- limits


def test_a_service_day_limit_counts_sessions_not_seats(store: Storefront, ctx: Any,
                                                       cat: dict[str, Any]) -> None:
    set_service(ctx, cat["service"], seats=2, limits={"day": 2})
    assert hold(store, cat, TUE_9, who="a").status_code == 201
    assert hold(store, cat, TUE_9, who="b").status_code == 201  # joins: no new session
    assert hold(store, cat, TUE_10, who="c").status_code == 201
    r = hold(store, cat, "2026-12-01T10:00:00Z", who="d")
    assert code(r) == (409, "limit_reached")
    # The limit is the expert's: the other expert, and the next day, are open.
    assert hold(store, cat, "2026-12-01T10:00:00Z", expert=cat["experts"][1],
                who="d").status_code == 201
    assert hold(store, cat, WED_9, who="e").status_code == 201
    # A seat of an open session is still for sale on a day at its limit.
    assert hold(store, cat, TUE_10, who="f").status_code == 201
    assert counter(ctx, cat["expert"], cat["service"], "D2026-12-01") == (2, 2)
    assert_counters_exact(ctx)


def test_an_expert_limit_counts_every_service(store: Storefront, admin: Admin, ctx: Any,
                                              cat: dict[str, Any]) -> None:
    other = admin("POST", "/services", {"title": "Other", "duration_minutes": 30}).json["id"]
    admin("PATCH", f"/experts/{cat['expert']}", {"services": [cat["service"], other]})
    set_expert(ctx, cat["expert"], limits={"day": 2})
    assert hold(store, cat, TUE_9, who="a").status_code == 201
    assert store.hold(other, cat["expert"], TUE_930, customer="b").status_code == 201
    assert code(hold(store, cat, TUE_10, who="c")) == (409, "limit_reached")
    assert code(store.hold(other, cat["expert"], TUE_10, customer="c")) == (409,
                                                                             "limit_reached")
    assert counter(ctx, cat["expert"], EXPERT_SCOPE, "D2026-12-01") == (2, 2)
    assert_counters_exact(ctx)


def test_week_and_month_limits(store: Storefront, ctx: Any, cat: dict[str, Any]) -> None:
    set_service(ctx, cat["service"], limits={"week": 2, "month": 3})
    assert hold(store, cat, TUE_9, who="a").status_code == 201  # W49, December
    assert hold(store, cat, WED_9, who="b").status_code == 201
    assert code(hold(store, cat, "2026-12-03T08:00:00Z", who="c")) == (409, "limit_reached")
    assert hold(store, cat, "2026-12-07T08:00:00Z", who="c").status_code == 201  # W50
    # December has had three: its fourth is refused in any week.
    assert code(hold(store, cat, "2026-12-08T08:00:00Z", who="d")) == (409, "limit_reached")
    assert_counters_exact(ctx)


def test_release_and_expiry_give_the_limit_back(store: Storefront, ctx: Any,
                                                cat: dict[str, Any]) -> None:
    set_service(ctx, cat["service"], limits={"day": 1})
    first = hold(store, cat, TUE_9, who="a")
    assert code(hold(store, cat, TUE_10, who="b")) == (409, "limit_reached")
    store.release(first.json["hold"])
    assert hold(store, cat, TUE_10, who="b").status_code == 201
    # Expired, with no sweeper having run: the next writer frees the period.
    ctx.clock.advance(601)
    assert hold(store, cat, TUE_930, who="c").status_code == 201
    assert_counters_exact(ctx)


# --------------------------------------------------------------------------- order of checks


def test_checks_come_in_the_contract_order(store: Storefront, ctx: Any, cat: dict[str, Any]
                                           ) -> None:
    set_service(ctx, cat["service"], limits={"day": 3}, questions=[TOPIC])
    good = {"topic": "taxes"}
    for start in (TUE_9, TUE_930, TUE_10):
        assert hold(store, cat, start, answers=good).status_code == 201
    # Three live holds: the visitor's limit and the day's limit are both reached.
    at_limit = "2026-12-01T10:00:00Z"
    assert code(hold(store, cat, at_limit, answers={})) == (422, "invalid_answers")
    assert code(hold(store, cat, "2026-12-01T10:10:00Z", answers=good)) == (422, "not_a_slot")
    assert code(hold(store, cat, at_limit, answers=good)) == (429, "too_many_holds")
    assert code(hold(store, cat, at_limit, answers=good, who="b")) == (409, "limit_reached")
    assert code(hold(store, cat, TUE_9, answers=good, who="b")) == (409, "slot_unavailable")


def test_answers_are_kept_and_carried_to_the_cart(store: Storefront, ctx: Any,
                                                  cat: dict[str, Any]) -> None:
    set_service(ctx, cat["service"], questions=[
        TOPIC, {"id": "newsletter", "label": "Newsletter", "type": "checkbox",
                "required": False}])
    r = hold(store, cat, answers={"topic": "  taxes ", "newsletter": True})
    assert r.status_code == 201, r.text
    props = r.json["line_item_properties"]
    assert props["Topic"] == "taxes" and props["Newsletter"] == "true"
    assert props["_hold"] == r.json["hold"] and props["Expert"] == "Expert 0"
    [claim] = live_claims(ctx)
    assert claim.answers == {"topic": "taxes", "newsletter": "true"}
    bad = hold(store, cat, TUE_930, answers={"topic": "x", "colour": "red"})
    assert code(bad) == (422, "invalid_answers") and "colour" in bad.json["error"]["message"]
    missing = hold(store, cat, TUE_930, answers={})
    assert code(missing) == (422, "invalid_answers") and "topic" in missing.json["error"][
        "message"]


# --------------------------------------------------------------------------- orders


@pytest.mark.parametrize(("quantity", "booked", "extra"), [(3, 3, 0), (5, 3, 2), (1, 1, 0)])
def test_the_lines_quantity_books_that_many_seats(store: Storefront, admin: Admin, ctx: Any,
                                                  cat: dict[str, Any], quantity: int,
                                                  booked: int, extra: int) -> None:
    set_service(ctx, cat["service"], seats=3)
    h = hold(store, cat, seats=3).json["hold"]
    book(store, h, 41, quantity=quantity, price="20.00")
    [b] = admin("GET", "/bookings").json["bookings"]
    assert (b["id"], b["status"], b["seats"]) == (h, "confirmed", booked)
    refunds = [(e["reason"], e["quantity"], e["amount"])
               for e in admin("GET", "/refunds").json["refunds"]]
    assert refunds == ([("extra_quantity", extra, f"{20 * extra}.00")] if extra else [])
    [claim] = live_claims(ctx)
    assert seats_used(ctx, claim.session_key) == booked
    # Seats the line did not buy are for sale again at once: shown, and won.
    left = 3 - booked
    assert seats_left(store, cat) == (left or None)
    if left:
        assert hold(store, cat, seats=left, who="b").status_code == 201
    assert code(hold(store, cat, seats=1, who="c")) == (409, "slot_unavailable")
    assert_counters_exact(ctx)


def test_cancelling_one_customer_frees_one_seat(store: Storefront, ctx: Any,
                                                cat: dict[str, Any]) -> None:
    from tests.capacity.helpers import cancel

    set_service(ctx, cat["service"], seats=2, limits={"day": 1})
    a = hold(store, cat, who="a").json["hold"]
    b = hold(store, cat, who="b").json["hold"]
    book(store, a, 51)
    book(store, b, 52)
    assert code(hold(store, cat, who="c")) == (409, "slot_unavailable")
    cancel(store, a, 51)
    [left] = live_claims(ctx)
    assert left.id == b and seats_used(ctx, left.session_key) == 1
    assert seats_left(store, cat) == 1
    assert hold(store, cat, who="c").status_code == 201
    # The session still counts once towards the day; cancelling all frees the day.
    assert counter(ctx, cat["expert"], cat["service"], "D2026-12-01")[0] == 1
    assert_counters_exact(ctx)


# --------------------------------------------------------------------------- any


def test_any_assigns_an_expert_and_fails_only_when_none_can(store: Storefront, admin: Admin,
                                                            ctx: Any, cat: dict[str, Any]
                                                            ) -> None:
    first, second = sorted(cat["experts"])
    names = {e["id"]: e["name"] for e in admin("GET", "/experts").json["experts"]}
    r = hold(store, cat, expert="any", who="a")
    assert r.status_code == 201, r.text
    assert r.json["expert"] == first  # nobody booked yet: by id
    assert r.json["line_item_properties"]["Expert"] == names[first]
    r2 = hold(store, cat, expert="any", who="b")
    assert r2.status_code == 201 and r2.json["expert"] == second
    assert code(hold(store, cat, expert="any", who="c")) == (409, "slot_unavailable")
    # Not a slot of any expert (off the grid, or a Saturday).
    assert code(hold(store, cat, "2026-12-01T08:10:00Z", expert="any")) == (422, "not_a_slot")
    assert code(hold(store, cat, "2026-12-05T08:00:00Z", expert="any")) == (422, "not_a_slot")
    assert_counters_exact(ctx)


def test_any_skips_an_expert_who_is_off_full_or_at_a_limit(store: Storefront, admin: Admin,
                                                           ctx: Any, cat: dict[str, Any]
                                                           ) -> None:
    first, second = sorted(cat["experts"])
    # The first expert is off on Tuesday: only the second offers 09:00.
    admin("PUT", f"/experts/{first}/schedule",
          {"weekly": WEEKDAYS_9_17, "overrides": [{"date": "2026-12-01", "windows": []}]})
    assert hold(store, cat, expert="any", who="a").json["expert"] == second
    # Wednesday: the first expert reached a day limit, so the second takes it.
    set_expert(ctx, first, limits={"day": 1})
    assert hold(store, cat, WED_9, expert=first, who="b").status_code == 201
    r = hold(store, cat, "2026-12-02T09:00:00Z", expert="any", who="c")
    assert r.status_code == 201 and r.json["expert"] == second
    # The second one's Wednesday 10:00 is taken too: nobody is left.
    assert code(hold(store, cat, "2026-12-02T09:00:00Z", expert="any", who="d")) == (
        409, "slot_unavailable")
    assert_counters_exact(ctx)


def test_any_with_seats_joins_an_open_session(store: Storefront, ctx: Any,
                                              cat: dict[str, Any]) -> None:
    set_service(ctx, cat["service"], seats=2)
    first, second = sorted(cat["experts"])
    assert hold(store, cat, expert="any", seats=2, who="a").json["expert"] == first
    r = hold(store, cat, expert="any", seats=2, who="b")
    assert r.status_code == 201 and r.json["expert"] == second
    assert code(hold(store, cat, expert="any", who="c")) == (409, "slot_unavailable")
    assert_counters_exact(ctx)


def test_any_answers_and_busy_calendar(store: Storefront, ctx: Any, cat: dict[str, Any]
                                       ) -> None:
    """What the shop's calendar provider says is busy is passed over for ``any``."""
    from engine.domain.slots import Instant

    first, second = sorted(cat["experts"])

    def busy(_s: Any, _shop: str, experts: Any, a: Instant, b: Instant
             ) -> dict[str, list[tuple[Instant, Instant]]]:
        return {first: [(a, b)]} if first in experts else {}

    ctx.busy_source = busy
    set_service(ctx, cat["service"], questions=[TOPIC])
    r = hold(store, cat, expert="any", answers={"topic": "tax"})
    assert r.status_code == 201 and r.json["expert"] == second
    assert r.json["line_item_properties"]["Topic"] == "tax"
    assert code(hold(store, cat, expert="any", who="b", answers={"topic": "tax"})) == (
        409, "slot_unavailable")
