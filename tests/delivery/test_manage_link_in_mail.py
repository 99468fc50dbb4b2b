"""The manage link is in both parts of the confirmation, reschedule and reminder mails
(never in a cancellation), and opens the booking. Both databases."""

from __future__ import annotations

import html
import re

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.services import reminders
from engine.services.shops import ShopRef
from tests.conftest import Admin, Storefront
from tests.delivery.helpers import cancel, later, move, relay
from tests.tasks.helpers import MAIL, SLOT, book, set_providers

LINK = re.compile(r"https://alpha\.myshopify\.com/apps/consult/manage\?booking=[^\s\"<)]+")


def test_manage_link_in_every_mail_that_keeps_the_booking(
        ctx: Context, shop: ShopRef, admin: Admin, store: Storefront) -> None:
    set_providers(ctx, shop, mail="recording")
    booking = book(admin, store)
    relay(ctx)
    move(ctx, booking, later(SLOT, days=1))
    relay(ctx)
    clock = ctx.clock
    assert isinstance(clock, FixedClock)
    # An hour before the OLD time nothing goes (the reminder follows the new time)...
    clock.advance((later(SLOT, minutes=-59) - clock.now()).total_seconds())
    assert reminders.run_due(ctx.db, clock, ctx.plugins).sent == []
    # ...an hour before the new one, it does.
    clock.advance((later(SLOT, days=1, minutes=-59) - clock.now()).total_seconds())
    assert len(reminders.run_due(ctx.db, clock, ctx.plugins).sent) == 1
    cancel(ctx, booking)
    relay(ctx)

    subjects = {m.subject.split(":")[0]: m for m in MAIL.to("jon@example.com")}
    assert set(subjects) == {"Booking confirmed", "Booking rescheduled", "Reminder",
                             "Booking cancelled"}
    links = set()
    for name in ("Booking confirmed", "Booking rescheduled", "Reminder"):
        message = subjects[name]
        [link] = LINK.findall(message.text)
        assert f"booking={booking}" in link
        assert html.escape(link, quote=True) in (message.html or "")
        links.add(link)
    assert len(links) == 1  # the same link every time
    assert not LINK.findall(subjects["Booking cancelled"].text)
