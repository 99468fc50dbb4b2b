"""After a reschedule: the SAME calendar event is updated in place (local calendar and
the fake Google), the customer gets ONE "rescheduled" mail whose .ics keeps the UID and
raises the SEQUENCE, and a retried task changes nothing more. Both databases."""

from __future__ import annotations

from typing import Any

from icalendar import Calendar
from sqlalchemy import select

from engine.bootstrap import Context
from engine.services import outbox
from engine.services.shops import ShopRef
from plugins.calendar_google import event_id
from plugins.calendar_local.models import LocalCalendarEvent
from tests.conftest import Admin, Storefront
from tests.delivery.helpers import claim_of, later, move, redeliver, relay
from tests.fakes.google import FakeGoogle
from tests.plugins.conftest import connect
from tests.tasks.helpers import MAIL, SLOT, book, set_providers

NEW = later(SLOT, days=1)  # Wednesday, same hour


def _event(message: Any) -> Any:
    [event] = Calendar.from_ical(message.ics).walk("VEVENT")
    return event


def _rescheduled(address: str = "jon@example.com") -> list[Any]:
    return [m for m in MAIL.to(address) if m.subject.startswith("Booking rescheduled")]


def test_local_event_moves_in_place_and_one_mail_goes(
        ctx: Context, shop: ShopRef, admin: Admin, store: Storefront) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    relay(ctx)
    [confirmation] = [m for m in MAIL.to("jon@example.com")
                      if m.subject.startswith("Booking confirmed")]
    move(ctx, booking, NEW)
    assert all(o.status == "done" for o in relay(ctx))

    with ctx.db.read() as session:
        rows = session.scalars(select(LocalCalendarEvent)).all()
        assert [(r.booking_id, r.start, r.sequence, r.status) for r in rows] == \
            [(booking, NEW, 1, "confirmed")]
    [mail] = _rescheduled()
    assert mail.html and mail.text and mail.ics_method == "REQUEST"
    cal = Calendar.from_ical(mail.ics)
    assert cal["method"] == "REQUEST"
    event, first = _event(mail), _event(confirmation)
    assert str(event["uid"]) == str(first["uid"]) == f"{booking}@consultbook"
    assert int(event["sequence"]) == 1 > int(first["sequence"])
    assert event.decoded("dtstart") == NEW
    # The new time and the old one; the customer's zone is the shop's here.
    assert "New time: Wednesday 2 December 2026, 10:00" in mail.text
    assert "It was: Tuesday 1 December 2026, 10:00" in mail.text

    calls = MAIL.calls
    redeliver(ctx, outbox.RESCHEDULED_KIND)
    relay(ctx)
    assert MAIL.calls == calls and len(_rescheduled()) == 1
    with ctx.db.read() as session:
        assert session.scalar(select(LocalCalendarEvent.sequence)) == 1


def test_google_event_is_patched_not_duplicated(
        ctx: Context, shop: ShopRef, admin: Admin, store: Storefront,
        google: FakeGoogle) -> None:
    connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})
    set_providers(ctx, shop, calendar="google", video="none", mail="recording")
    google.busy["e0@example.com"] = []
    booking = book(admin, store)
    relay(ctx)
    assert len(google.live_events()) == 1
    move(ctx, booking, NEW)
    assert all(o.status == "done" for o in relay(ctx))

    [event] = google.live_events()
    assert event["id"] == event_id(booking)
    assert event["start"]["dateTime"] == NEW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(google.calls("POST", r"/events$")) == 1
    assert len(google.calls("PATCH", r"/events/")) == 1
    assert claim_of(ctx, booking).external["event"]["id"] == event_id(booking)  # type: ignore[index]
    assert len(_rescheduled()) == 1

    redeliver(ctx, outbox.RESCHEDULED_KIND)
    relay(ctx)
    assert len(google.calls("PATCH", r"/events/")) == 1
    assert len(google.live_events()) == 1 and len(_rescheduled()) == 1
