"""A seated session (service seats > 1) has ONE calendar event: two customers -> one
Google event with both as attendees; one cancels -> one attendee; the last one cancels
-> the event is cancelled. Both databases."""

from __future__ import annotations

from sqlalchemy import update

from engine.bootstrap import Context
from engine.services.outbox import session_event_id
from engine.services.shops import ShopRef
from engine.store.models import Service
from plugins.calendar_google import event_id
from tests.conftest import Admin, Storefront, make_catalog, order_payload
from tests.delivery.helpers import cancel, claim_of, relay
from tests.fakes.google import FakeGoogle
from tests.plugins.conftest import connect
from tests.tasks.helpers import SLOT, set_providers


def _customers(google: FakeGoogle) -> list[str]:
    [event] = google.live_events()
    return sorted(a["email"] for a in event["attendees"] if a["email"] != "e0@example.com")


def test_one_event_per_session_with_each_customer_an_attendee(
        ctx: Context, shop: ShopRef, admin: Admin, store: Storefront,
        google: FakeGoogle) -> None:
    connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})
    set_providers(ctx, shop, calendar="google", video="none", mail="recording")
    google.busy["e0@example.com"] = []
    catalog = make_catalog(admin)
    with ctx.db.write() as session:
        session.execute(update(Service).where(Service.id == catalog["service"])
                        .values(seats=3))
    bookings = []
    for n, email in enumerate(("ann@example.com", "bob@example.com")):
        r = store.hold(catalog["service"], catalog["expert"], SLOT)
        assert r.status_code == 201, r.text
        hold = r.json["hold"]
        r = store.webhook("orders/paid", order_payload(2000 + n, [hold], email=email))
        assert r.status_code == 200, r.text
        bookings.append(hold)
    relay(ctx)

    key = claim_of(ctx, bookings[0]).session_key
    assert key == claim_of(ctx, bookings[1]).session_key
    [event] = google.live_events()
    assert event["id"] == event_id(session_event_id(key))
    assert _customers(google) == ["ann@example.com", "bob@example.com"]
    assert len(google.calls("POST", r"/events$")) <= 2  # the second create met the first

    cancel(ctx, bookings[0])
    relay(ctx)
    assert _customers(google) == ["bob@example.com"]

    cancel(ctx, bookings[1])
    relay(ctx)
    assert google.live_events() == []
