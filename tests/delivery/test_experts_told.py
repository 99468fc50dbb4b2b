"""Experts told (notify_experts): a new booking, a reschedule and a cancellation each
reach the expert with an .ics of the customer's UID (REQUEST / REQUEST / CANCEL); with
the setting off, none. Both databases."""

from __future__ import annotations

import pytest
from icalendar import Calendar

from engine.bootstrap import Context
from engine.services.shops import ShopRef
from tests.conftest import Admin, Storefront
from tests.delivery.helpers import cancel, later, move, relay, set_notify_experts
from tests.tasks.helpers import MAIL, SLOT, book, set_providers


@pytest.mark.parametrize("on", [True, False])
def test_the_expert_hears_of_each_step(ctx: Context, shop: ShopRef, admin: Admin,
                                       store: Storefront, on: bool) -> None:
    set_providers(ctx, shop, mail="recording")
    set_notify_experts(ctx, shop.id, on)
    booking = book(admin, store)
    relay(ctx)
    move(ctx, booking, later(SLOT, days=1))
    relay(ctx)
    cancel(ctx, booking)
    relay(ctx)

    mails = MAIL.to("e0@example.com")
    if not on:
        assert mails == []
        assert len(MAIL.to("jon@example.com")) == 3  # the customer is told regardless
        return
    assert [m.subject.split(":")[0] for m in mails] == \
        ["New booking", "Booking moved", "Booking cancelled"]
    seen = []
    for message in mails:
        assert message.ics is not None and message.html
        cal = Calendar.from_ical(message.ics)
        [event] = cal.walk("VEVENT")
        seen.append((str(cal["method"]), str(event["uid"]), int(event["sequence"])))
    uid = f"{booking}@consultbook"
    assert seen == [("REQUEST", uid, 0), ("REQUEST", uid, 1), ("CANCEL", uid, 2)]
