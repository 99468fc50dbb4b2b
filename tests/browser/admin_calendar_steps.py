"""Reusable steps on the admin's bookings calendar (web/static/admin.js), for any browser
test that drives the embedded admin -- in the demo's simulated Shopify admin (the app in
``iframe.app-frame``) or the admin page opened on its own.

Each step takes the Playwright ``page`` and waits for what it did to be shown, so that a
journey test reads as the merchant's steps::

    open_bookings_calendar(page)
    reschedule_from_calendar(page, "Kiran Rao", "2026-12-03", "15:00", day_iso="2026-12-01")
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from playwright.sync_api import FrameLocator, Locator, Page, expect


def admin_app(page: Page) -> FrameLocator | Page:
    """Where the admin is drawn: the app frame of the demo's Shopify admin, else the page."""
    if page.locator("iframe.app-frame").count():
        return page.frame_locator("iframe.app-frame")
    return page


def calendar(page: Page) -> Locator:
    return admin_app(page).locator("#bookings-calendar")


def wait_loaded(page: Page) -> None:
    """The calendar has drawn the list it last asked for."""
    holder = calendar(page)
    expect(holder).to_have_attribute("data-view", re.compile("week|month"))
    expect(holder).not_to_have_attribute("aria-busy", "true")


def open_bookings_calendar(page: Page, view: str = "week") -> Any:
    """Open the Bookings section and its ``week`` or ``month`` view; the app locator."""
    app = admin_app(page)
    app.get_by_role("link", name="Bookings", exact=True).click()
    expect(app.get_by_role("heading", name="Bookings", level=2)).to_be_visible()
    wait_loaded(page)
    choose_view(page, view)
    return app


def choose_view(page: Page, view: str) -> None:
    app = admin_app(page)
    radio = app.get_by_role("radio", name=view.capitalize(), exact=True)
    if not radio.is_checked():
        radio.check()
    expect(calendar(page)).to_have_attribute("data-view", view)
    wait_loaded(page)


def _monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def go_to_day(page: Page, day_iso: str) -> None:
    """Step the current view (Previous / Next) until it shows ``day_iso`` (a date in the
    shop's zone): its week, or its month."""
    app = admin_app(page)
    holder = calendar(page)
    wait_loaded(page)
    view = holder.get_attribute("data-view")
    day = date.fromisoformat(day_iso)
    want = (day.replace(day=1) if view == "month" else _monday(day)).isoformat()
    unit = "month" if view == "month" else "week"
    for _ in range(120):
        first = holder.get_attribute("data-first") or ""
        if first == want:
            return
        name = f"Next {unit} \u203a" if first < want else f"\u2039 Previous {unit}"
        app.get_by_role("button", name=name, exact=True).click()
        expect(holder).not_to_have_attribute("data-first", first)
        wait_loaded(page)
    raise AssertionError(f"the calendar never reached {want}")


def set_filters(page: Page, *, expert: str | None = None, service: str | None = None,
                status: str | None = None, search: str | None = None) -> None:
    """Choose filters by their visible labels (``"All experts"``, ``"No-show"`` ...) and
    type a customer search; waits for the narrowed list."""
    app = admin_app(page)
    summary = app.locator("#bookings-summary")
    for label, value in (("Expert", expert), ("Service", service), ("Status", status)):
        if value is not None:
            select = app.get_by_label(label, exact=True)
            before = summary.inner_text()
            select.select_option(label=value)
            _settled(page, summary, before)
    if search is not None:
        box = app.get_by_label("Search customers")
        before = summary.inner_text()
        box.fill(search)
        _settled(page, summary, before)


def _settled(page: Page, summary: Locator, before: str) -> None:
    # The debounced request may give the same sentence back: wait for the holder instead
    # when the summary does not change within the debounce.
    try:
        expect(summary).not_to_have_text(before, timeout=1500)
    except AssertionError:
        pass
    wait_loaded(page)


def booking_in_calendar(page: Page, customer_name: str) -> Locator:
    """The calendar's button of ``customer_name``'s booking (week view, or the chosen day
    of the month view)."""
    return calendar(page).locator(".chip-button", has_text=customer_name)


def open_booking(page: Page, customer_name: str) -> Locator:
    """Open the details of ``customer_name``'s booking from the calendar; the dialog."""
    booking_in_calendar(page, customer_name).first.click()
    dialog = admin_app(page).get_by_role("dialog", name="Booking details")
    expect(dialog).to_be_visible()
    return dialog


def reschedule_from_calendar(page: Page, customer_name: str, new_day_iso: str,
                             new_time_hm: str, *, day_iso: str | None = None,
                             view: str = "week") -> None:
    """Move ``customer_name``'s booking to ``new_day_iso`` at ``new_time_hm`` (the shop's
    wall clock) from the calendar: the booking's details, Reschedule, the new date and
    time, done. ``day_iso``: the booking's current date, to step the calendar there first
    (else the calendar must show it already)."""
    app = admin_app(page)
    if not app.locator("#bookings-calendar").count():
        open_bookings_calendar(page, view)
    if day_iso is not None:
        go_to_day(page, day_iso)
        if view == "month" or calendar(page).get_attribute("data-view") == "month":
            calendar(page).locator(f'.month-day[data-date="{day_iso}"]').click()
    details = open_booking(page, customer_name)
    details.get_by_role("button", name="Reschedule", exact=True).click()
    dialog = app.get_by_role("dialog", name="Reschedule this booking")
    expect(dialog).to_be_visible()
    dialog.locator("#resched-date").fill(new_day_iso)
    dialog.locator("#resched-time").fill(new_time_hm)
    dialog.get_by_role("button", name="Reschedule", exact=True).click()
    done = app.get_by_role("dialog", name="Booking rescheduled")
    expect(done.locator("#resched-outcome")).to_contain_text("Booking moved to")
    done.get_by_role("button", name="Close").click()
    expect(done).to_have_count(0)
    wait_loaded(page)


def mark_no_show(page: Page, customer_name: str) -> Locator:
    """Mark ``customer_name``'s (past, confirmed) booking a no-show from its details; the
    details dialog, still open."""
    dialog = open_booking(page, customer_name)
    dialog.get_by_role("button", name="Mark no-show").click()
    expect(dialog.get_by_role("button", name="Remove no-show mark")).to_be_visible()
    expect(dialog).to_contain_text("no-show")
    return dialog
