"""``GET /admin/api/bookings`` filters (expert, service, status, customer search) and
``POST /admin/api/bookings/ID/no_show`` (engine/services/bookings.py), on SQLite and
PostgreSQL: the filters are SQL (a fixed number of queries whatever the list's length),
bad values are 400s with the error shape, and a no-show is a confirmed booking with a
mark -- still a booking in the export and the home page's numbers.

NOW is Monday 2026-11-30 12:00 UTC (13:00 in Berlin); the past bookings are made with
the clock moved back, as Shopify would have made them then.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import event

from engine.bootstrap import Context
from engine.services.shops import ShopRef
from tests.conftest import NOW, Admin, Storefront, make_catalog, order_payload

EARLIER = datetime(2026, 11, 20, 12, tzinfo=UTC)


def book(ctx: Context, store: Storefront, service: str, expert: str, start: str,
         order_id: int, *, at: datetime = NOW, paid: bool = True, first: str = "Jon",
         last: str = "Snow", email: str = "jon@example.com") -> str:
    ctx.clock.set(at)  # type: ignore[attr-defined]
    try:
        r = store.hold(service, expert, start, ip=f"198.51.100.{order_id % 200}")
        assert r.status_code == 201, r.text
        hold = str(r.json["hold"])
        payload = order_payload(order_id, [hold], updated_at=at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                financial_status="paid" if paid else "pending",
                                first_name=first, last_name=last, email=email)
        r = store.webhook("orders/paid" if paid else "orders/create", payload)
        assert r.status_code == 200, r.text
    finally:
        ctx.clock.set(NOW)  # type: ignore[attr-defined]
    return hold


@pytest.fixture
def shop_bookings(ctx: Context, admin: Admin, store: Storefront) -> dict[str, Any]:
    """Two experts of a 30-minute service, a second service of expert 0, and bookings of
    every kind: past and future, paid, pending and cancelled, several customers."""
    cat = make_catalog(admin, experts=2)
    e0, e1 = cat["experts"]
    svc = cat["service"]
    other = admin("POST", "/services", {"title": "Second opinion", "duration_minutes": 30,
                                        "variant_id": 4242}).json["id"]
    assert admin("PATCH", f"/experts/{e0}", {"services": [svc, other]}).status_code == 200
    ids = {
        # Tuesday 2026-11-24 10:00 Berlin: over by NOW.
        "past": book(ctx, store, svc, e0, "2026-11-24T09:00:00Z", 501, at=EARLIER,
                     first="Ada", last="Lovelace", email="ada@example.com"),
        "past_other": book(ctx, store, other, e0, "2026-11-24T11:00:00Z", 502, at=EARLIER,
                           first="Grace", last="Hopper", email="grace@navy.example"),
        "future": book(ctx, store, svc, e1, "2026-12-01T09:00:00Z", 503,
                       first="Alan", last="Turing", email="alan@example.com"),
        "pending": book(ctx, store, svc, e0, "2026-12-01T10:00:00Z", 504, paid=False,
                        first="Edsger", last="Dijkstra", email="ewd@example.com"),
        "cancelled": book(ctx, store, svc, e1, "2026-12-02T09:00:00Z", 505,
                          first="Barbara", last="Liskov", email="barbara_l@example.com"),
        # 12:00-12:30 Berlin today: ended at 11:30 UTC, half an hour before NOW.
        "just_over": book(ctx, store, svc, e1, "2026-11-30T11:00:00Z", 506, at=EARLIER,
                          first="Ada", last="Müller", email="mueller@example.com"),
    }
    r = admin("POST", f"/bookings/{ids['cancelled']}/cancel")
    assert r.status_code == 200, r.text
    return {"service": svc, "other": other, "e0": e0, "e1": e1, "ids": ids}


RANGE = "from=2026-11-01T00:00:00Z&to=2027-01-01T00:00:00Z"


def listed(admin: Admin, query: str = "") -> list[str]:
    r = admin("GET", f"/bookings?{RANGE}{'&' + query if query else ''}")
    assert r.status_code == 200, r.text
    return [b["id"] for b in r.json["bookings"]]


def names(b: dict[str, Any], keys: list[str]) -> set[str]:
    return {k for k, v in b["ids"].items() if v in keys}


def test_without_filters_every_booking_is_listed_with_its_no_show_mark(
        admin: Admin, shop_bookings: dict[str, Any]) -> None:
    r = admin("GET", f"/bookings?{RANGE}")
    found = r.json["bookings"]
    assert names(shop_bookings, [b["id"] for b in found]) == set(shop_bookings["ids"])
    assert all(b["no_show"] is False and b["no_show_at"] is None for b in found)


@pytest.mark.parametrize(("query", "expected"), [
    ("expert={e0}", {"past", "past_other", "pending"}),
    ("expert={e1}", {"future", "cancelled", "just_over"}),
    ("service={other}", {"past_other"}),
    ("service={service}&expert={e0}", {"past", "pending"}),
    ("status=pending", {"pending"}),
    ("status=cancelled", {"cancelled"}),
    ("status=confirmed", {"past", "past_other", "future", "just_over"}),
    ("status=no_show", set()),
    ("status=", {"past", "past_other", "future", "pending", "cancelled", "just_over"}),
    ("q=ada", {"past", "just_over"}),           # the name, any case
    ("q=ADA%20LOVE", {"past"}),                 # across first and last name
    ("q=navy.EXAMPLE", {"past_other"}),         # the email
    ("q=M%C3%BCller", {"just_over"}),           # non-ASCII, as stored
    ("q=%25", set()),                           # LIKE's wildcards are literal
    ("q=_l%40", {"cancelled"}),                 # "_l@" matches only a real underscore
    ("q=nobody", set()),
    ("q=ada&expert={e1}", {"just_over"}),
    ("q=ada&status=pending", set()),
    ("expert=unknownexpertid", set()),
])
def test_filters_narrow_the_list(admin: Admin, shop_bookings: dict[str, Any], query: str,
                                 expected: set[str]) -> None:
    q = query.format(**{k: v for k, v in shop_bookings.items() if isinstance(v, str)})
    assert names(shop_bookings, listed(admin, q)) == expected


def test_another_shops_ids_filter_to_nothing(admin: Admin, other_admin: Admin,
                                             shop_bookings: dict[str, Any]) -> None:
    theirs = make_catalog(other_admin)
    assert listed(admin, f"expert={theirs['expert']}") == []
    assert listed(admin, f"service={theirs['service']}") == []
    # And theirs never sees ours, whatever the search.
    assert listed(other_admin, "q=ada") == []


@pytest.mark.parametrize(("query", "field"), [
    ("status=noshow", "status"),
    ("status=CONFIRMED", "status"),
    ("q=" + "x" * 101, "q"),
    ("q=a%00b", "q"),
    ("q=a%0Ab", "q"),
    ("expert=" + "e" * 65, "expert"),
    ("service=%00", "service"),
    ("expert=%20x", "expert"),
])
def test_bad_filters_are_400_naming_the_parameter(admin: Admin, shop_bookings: dict[str, Any],
                                                  query: str, field: str) -> None:
    r = admin("GET", f"/bookings?{RANGE}&{query}")
    assert r.status_code == 400, r.text
    assert r.json["error"]["code"] == "invalid_request"
    assert f"{field} " in r.json["error"]["message"] or f"'{field}'" in r.json["error"]["message"]


def test_a_search_of_100_characters_is_accepted(admin: Admin,
                                                shop_bookings: dict[str, Any]) -> None:
    assert listed(admin, "q=" + "x" * 100) == []


@contextmanager
def counted(ctx: Context) -> Iterator[list[str]]:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", seen)


def test_the_list_takes_the_same_queries_for_one_booking_as_for_six(
        ctx: Context, admin: Admin, shop_bookings: dict[str, Any]) -> None:
    with counted(ctx) as one:
        assert len(listed(admin, "q=lovelace&status=confirmed")) == 1
    with counted(ctx) as six:
        assert len(listed(admin)) == 6
    assert len(one) == len(six), (one, six)
    assert len(six) <= 12, six


# ----------------------------------------------------------------------------- no-show


def test_a_past_confirmed_booking_is_marked_and_unmarked(
        ctx: Context, admin: Admin, shop_bookings: dict[str, Any]) -> None:
    past = shop_bookings["ids"]["past"]
    r = admin("POST", f"/bookings/{past}/no_show", {"no_show": True})
    assert r.status_code == 200, r.text
    booking = r.json["booking"]
    assert (booking["id"], booking["status"], booking["no_show"], booking["no_show_at"]) == (
        past, "confirmed", True, "2026-11-30T12:00:00Z")
    assert admin("GET", f"/bookings/{past}").json["no_show"] is True
    assert names(shop_bookings, listed(admin, "status=no_show")) == {"past"}
    # Still confirmed: the confirmed filter keeps it.
    assert "past" in names(shop_bookings, listed(admin, "status=confirmed"))

    # Marking again keeps the first mark's time.
    ctx.clock.set(NOW + timedelta(hours=1))  # type: ignore[attr-defined]
    again = admin("POST", f"/bookings/{past}/no_show", {"no_show": True})
    assert again.json["booking"]["no_show_at"] == "2026-11-30T12:00:00Z"

    r = admin("POST", f"/bookings/{past}/no_show", {"no_show": False})
    assert r.status_code == 200
    assert (r.json["booking"]["no_show"], r.json["booking"]["no_show_at"]) == (False, None)
    assert listed(admin, "status=no_show") == []
    # Unmarking what is not marked is fine too.
    assert admin("POST", f"/bookings/{past}/no_show", {"no_show": False}).status_code == 200


def test_a_booking_that_ended_a_moment_ago_may_be_marked(
        admin: Admin, shop_bookings: dict[str, Any]) -> None:
    r = admin("POST", f"/bookings/{shop_bookings['ids']['just_over']}/no_show",
              {"no_show": True})
    assert r.status_code == 200, r.text
    assert r.json["booking"]["no_show"] is True


@pytest.mark.parametrize(("which", "code"), [
    ("future", "not_past"), ("pending", "not_confirmed"), ("cancelled", "not_confirmed")])
def test_only_a_past_confirmed_booking_may_be_marked(
        admin: Admin, shop_bookings: dict[str, Any], which: str, code: str) -> None:
    booking = shop_bookings["ids"][which]
    r = admin("POST", f"/bookings/{booking}/no_show", {"no_show": True})
    assert r.status_code == 409, r.text
    assert r.json["error"]["code"] == code
    assert r.json["error"]["message"]
    assert admin("GET", f"/bookings/{booking}").json["no_show"] is False
    # Unmarking is allowed whatever the booking.
    assert admin("POST", f"/bookings/{booking}/no_show", {"no_show": False}).status_code == 200


def test_a_booking_in_progress_is_not_past(ctx: Context, admin: Admin,
                                           shop_bookings: dict[str, Any]) -> None:
    ctx.clock.set(datetime(2026, 12, 1, 9, 15, tzinfo=UTC))  # type: ignore[attr-defined]
    r = admin("POST", f"/bookings/{shop_bookings['ids']['future']}/no_show", {"no_show": True})
    assert (r.status_code, r.json["error"]["code"]) == (409, "not_past")
    ctx.clock.set(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))  # type: ignore[attr-defined]
    r = admin("POST", f"/bookings/{shop_bookings['ids']['future']}/no_show", {"no_show": True})
    assert r.status_code == 200, r.text


def test_cancelling_a_marked_booking_drops_the_mark_from_view(
        ctx: Context, admin: Admin, shop_bookings: dict[str, Any]) -> None:
    past = shop_bookings["ids"]["past"]
    assert admin("POST", f"/bookings/{past}/no_show", {"no_show": True}).status_code == 200
    assert admin("POST", f"/bookings/{past}/cancel").status_code == 200
    b = admin("GET", f"/bookings/{past}").json
    assert (b["status"], b["no_show"], b["no_show_at"]) == ("cancelled", False, None)
    assert listed(admin, "status=no_show") == []


@pytest.mark.parametrize("body", [{}, {"no_show": "yes"}, {"no_show": 1}, {"no_show": None},
                                  {"no_show": True, "note": "x"}, [True]])
def test_bad_no_show_bodies_are_400(admin: Admin, shop_bookings: dict[str, Any],
                                    body: Any) -> None:
    r = admin("POST", f"/bookings/{shop_bookings['ids']['past']}/no_show", body)
    assert r.status_code == 400, r.text
    assert r.json["error"]["code"] == "invalid_request"


def test_no_show_is_404_for_unknown_and_other_shops_bookings(
        admin: Admin, other_admin: Admin, shop_bookings: dict[str, Any],
        client: falcon.testing.TestClient, other_shop: ShopRef) -> None:
    past = shop_bookings["ids"]["past"]
    r = other_admin("POST", f"/bookings/{past}/no_show", {"no_show": True})
    assert (r.status_code, r.json["error"]["code"]) == (404, "not_found")
    assert admin("GET", f"/bookings/{past}").json["no_show"] is False
    r = admin("POST", "/bookings/nosuchbooking/no_show", {"no_show": True})
    assert r.status_code == 404
    r = client.simulate_post(f"/admin/api/bookings/{past}/no_show", json={"no_show": True})
    assert r.status_code == 401


def test_a_no_show_still_counts_in_the_export_and_the_numbers(
        admin: Admin, shop_bookings: dict[str, Any]) -> None:
    before = admin("GET", "/stats").json
    past = shop_bookings["ids"]["past"]
    assert admin("POST", f"/bookings/{past}/no_show", {"no_show": True}).status_code == 200
    r = admin("GET", f"/export?format=csv&{RANGE}")
    assert r.status_code == 200
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert rows[past]["status"] == "confirmed"
    assert rows[past]["no_show"] == "yes"
    assert {row["no_show"] for i, row in rows.items() if i != past} == {""}
    assert len(rows) == 6
    after = admin("GET", "/stats").json
    assert after["weeks"] == before["weeks"]
    assert after["cancellations"] == before["cancellations"]
    week = next(w for w in after["weeks"] if w["start"] == "2026-11-23")
    assert week["bookings"] == 2  # the no-show and Grace's booking of that Tuesday
