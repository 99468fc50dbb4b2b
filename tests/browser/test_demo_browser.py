"""The demo in a real browser: a customer books, a merchant edits hours, a slot is lost.

Each test starts its own `consultbook demo` (fresh SQLite, fresh outbox) and drives it
through Chromium, exactly as a newcomer would click through it.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.parser import BytesParser
from typing import Any
from zoneinfo import ZoneInfo

import requests
from playwright.sync_api import Page, expect

from tests.browser.conftest import DemoServer

BERLIN = ZoneInfo("Europe/Berlin")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
INTRO = "Intro call (30 min)"


def instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def new_page(browser: Any, tz: str, **kwargs: Any) -> Page:
    context = browser.new_context(timezone_id=tz, locale="en-GB", **kwargs)
    page: Page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(10_000)
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


def pick_expert(page: Page, name: str) -> None:
    calendar = page.locator("[data-consultbook-booking]")
    expect(calendar).to_have_class(re.compile("cb-ready"))
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    page.get_by_label("Expert").select_option(label=name)
    # The list reloads for that expert: every slot now belongs to them alone.
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    expect(page.locator(".cb-slot").first).to_be_visible()
    expect(page.locator(".cb-slot[data-experts*=' ']")).to_have_count(0)


def test_customer_in_los_angeles_books_end_to_end_and_gets_mail(
        demo_server: DemoServer, browser: Any) -> None:
    page = new_page(browser, "America/Los_Angeles")
    page.goto(f"{demo_server.base}/demo/store")
    page.get_by_role("link", name=INTRO).click()

    # The customer's zone is detected; the shop's is shown beside it.
    expect(page.get_by_label("Your time zone")).to_have_value("America/Los_Angeles")
    expect(page.locator("[data-shop-tz]")).to_have_text("Europe/Berlin")
    pick_expert(page, "Anna Berger")

    day = page.locator(".cb-day").nth(1)
    day.click()
    expect(day).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("heading", name=re.compile("^Times on"))).to_be_focused()
    slot = page.locator(".cb-slot").first
    start = instant(slot.get_attribute("data-start") or "")
    # Shown in Los Angeles time, filed under the Los Angeles date, with Berlin time beside it.
    local = start.astimezone(LOS_ANGELES)
    assert day.get_attribute("data-date") == local.date().isoformat()
    expect(slot.locator(".cb-slot-time")).to_have_text(local.strftime("%H:%M"))
    expect(slot.locator(".cb-slot-shop")).to_contain_text(
        start.astimezone(BERLIN).strftime("%H:%M"))

    slot.click()
    expect(page.get_by_role("heading", name="This time is held for you")).to_be_focused()
    expect(page.locator(".cb-hold-summary")).to_contain_text("Anna Berger")
    countdown = page.locator(".cb-countdown")
    expect(countdown).to_have_text(re.compile(r"^(9|10):[0-5]\d$"))
    before = countdown.inner_text()
    expect(countdown).not_to_have_text(before, timeout=3000)  # it counts down

    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url("**/demo/store/cart")
    expect(page.locator(".props")).to_contain_text("Anna Berger")
    expect(page.locator(".props")).to_contain_text("Appointment")
    assert "_hold" not in page.locator("main").inner_text()  # private property stays hidden

    page.get_by_label("First name").fill("Lena")
    page.get_by_label("Last name").fill("Lopez")
    page.get_by_label("Email").fill("lena@example.com")
    page.get_by_role("button", name=re.compile("^Pay")).click()
    expect(page.get_by_role("heading", name="Thank you, Lena!")).to_be_visible()
    expect(page.locator(".webhook")).to_have_attribute("data-webhook-status", "200")

    # The booking exists, at the instant the customer picked.
    token = demo_server.admin_token()
    now = datetime.now(UTC)
    r = requests.get(f"{demo_server.base}/admin/api/bookings", timeout=10,
                     headers={"Authorization": f"Bearer {token}"},
                     params={"from": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "to": (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert r.status_code == 200, r.text
    [booking] = r.json()["bookings"]
    assert instant(booking["start"]) == start
    assert booking["status"] == "confirmed"
    assert booking["expert"] == demo_server.experts["Anna Berger"]

    # The confirmation mail lands in the outbox (sent by the worker, in-process).
    deadline = time.monotonic() + 20
    mails: list[Any] = []
    while time.monotonic() < deadline:
        mails = [BytesParser(policy=policy.default).parsebytes(p.read_bytes())
                 for p in demo_server.mails()]
        if any("lena@example.com" in str(m["To"]) for m in mails):
            break
        time.sleep(0.3)
    to_lena = [m for m in mails if "lena@example.com" in str(m["To"])]
    assert len(to_lena) == 1, f"mails in the outbox: {[str(m['To']) for m in mails]}"
    # The invitation travels with it, as an .ics attachment.
    invites = [a for a in to_lena[0].iter_attachments()
               if a.get_content_type() in {"text/calendar", "application/ics"}
               or (a.get_filename() or "").endswith(".ics")]
    assert invites, [a.get_content_type() for a in to_lena[0].iter_attachments()]
    assert b"BEGIN:VCALENDAR" in invites[0].get_payload(decode=True)
    # The customer is told their own time (the zone the calendar detected) beside the
    # shop's.
    body = to_lena[0].get_body(preferencelist=("plain",))
    assert body is not None and "(America/Los_Angeles)" in body.get_content()
    assert booking["customer_timezone"] == "America/Los_Angeles"

    # ... and the demo's outbox viewer shows it.
    page.goto(f"{demo_server.base}/demo/outbox")
    expect(page.locator("table.outbox")).to_contain_text("lena@example.com")
    assert page.js_errors == []  # type: ignore[attr-defined]


def show_day(page: Any, day: date) -> None:
    """Page the month grid until it shows ``day`` (a date days ahead may be next month's)."""
    cells = page.locator(".cb-cell[data-date]")
    expect(cells.first).to_be_visible()
    for _ in range(3):
        dates = cells.evaluate_all("els => els.map(e => e.dataset.date)")
        if day.isoformat() in dates:
            return
        name = "Next month" if day.isoformat() > max(dates) else "Previous month"
        page.get_by_role("button", name=name).click()
        expect(cells.first).not_to_have_attribute("data-date", dates[0])  # re-rendered
    raise AssertionError(f"the month grid never showed {day}")


def next_weekday(today: date, weekday: int) -> date:
    """The first date after today with this weekday (Monday = 0)."""
    return today + timedelta(days=(weekday - today.weekday() - 1) % 7 + 1)


def test_admin_changes_hours_and_the_storefront_shows_them(
        demo_server: DemoServer, browser: Any) -> None:
    today = datetime.now(BERLIN).date()
    sunday = next_weekday(today, 6)
    closed = next_weekday(today + timedelta(days=1), 2)  # a Wednesday Anna normally works
    page = new_page(browser, "Europe/Berlin")
    product = f"{demo_server.base}/demo/store/products/{demo_server.services[INTRO]}"

    page.goto(product)
    pick_expert(page, "Anna Berger")
    show_day(page, closed)
    expect(page.locator(f".cb-day[data-date='{closed}']")).to_have_count(1)
    show_day(page, sunday)
    expect(page.locator(f".cb-day[data-date='{sunday}']")).to_have_count(0)

    # The merchant opens the embedded admin: Sunday 10-12 and a day off on that Wednesday.
    page.goto(f"{demo_server.base}/demo/admin")
    app = page.frame_locator("iframe.app-frame")
    app.get_by_role("link", name="Hours").click()
    app.get_by_label("Expert").select_option(label="Anna Berger")
    app.get_by_role("button", name="Add hours to Sunday").click()
    expect(app.get_by_label("Sunday window 1 from")).to_be_focused()
    app.get_by_label("Sunday window 1 from").fill("10:00")
    app.get_by_label("Sunday window 1 until").fill("12:00")
    app.get_by_role("button", name="Add a date override").click()
    app.get_by_label("Override 1 date").fill(closed.isoformat())
    app.get_by_role("button", name="Save working hours").click()
    expect(app.locator("#status")).to_have_text("Working hours of Anna Berger saved.")
    expect(app.locator("#alert")).to_have_text("")

    # The storefront follows at once.
    page.goto(product)
    pick_expert(page, "Anna Berger")
    show_day(page, closed)
    expect(page.locator(f".cb-day[data-date='{closed}']")).to_have_count(0)
    show_day(page, sunday)
    page.locator(f".cb-day[data-date='{sunday}']").click()
    expect(page.locator(".cb-slot .cb-slot-time")).to_have_text(
        ["10:00", "10:30", "11:00", "11:30"])
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_slot_taken_meanwhile_shows_a_clear_message_and_backing_out_frees_the_slot(
        demo_server: DemoServer, browser: Any) -> None:
    service, anna = demo_server.services[INTRO], demo_server.experts["Anna Berger"]
    page = new_page(browser, "Europe/Berlin")
    # The calendar as a page of its own, through the (simulated) App Proxy.
    page.goto(f"{demo_server.base}/demo/store/apps/consult/book?service={service}")
    expect(page.get_by_role("heading", name=f"Book: {INTRO}")).to_be_visible()
    pick_expert(page, "Anna Berger")
    page.locator(".cb-day").nth(1).click()
    first, second = page.locator(".cb-slot").nth(0), page.locator(".cb-slot").nth(1)
    start_a, start_b = first.get_attribute("data-start"), second.get_attribute("data-start")

    # Keyboard only: hold the second slot, then back out.
    second.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="This time is held for you")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Choose another time")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(".cb-status")).to_have_text(re.compile("released"))
    expect(page.locator(".cb-hold")).to_be_hidden()
    # Released means free again at once, for anyone.
    other = demo_server.proxy("POST", "holds", json={"service": service, "expert": anna,
                                                     "start": start_b})
    assert other.status_code == 201, other.text

    # Someone else takes the first slot while our customer is still looking at it.
    other = demo_server.proxy("POST", "holds", json={"service": service, "expert": anna,
                                                     "start": start_a})
    assert other.status_code == 201, other.text
    page.locator(f".cb-slot[data-start='{start_a}']").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("that time was just taken by someone else")
    expect(page.locator(".cb-hold")).to_be_hidden()
    # The list is refreshed: neither taken slot is offered any more; focus is back on it.
    expect(page.locator(f".cb-slot[data-start='{start_a}']")).to_have_count(0)
    expect(page.locator(f".cb-slot[data-start='{start_b}']")).to_have_count(0)
    expect(page.get_by_role("heading", name=re.compile("^Times on"))).to_be_focused()
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_calendar_fits_a_phone(demo_server: DemoServer, browser: Any) -> None:
    page = new_page(browser, "Asia/Tokyo", viewport={"width": 360, "height": 740},
                    is_mobile=True, has_touch=True)
    page.goto(f"{demo_server.base}/demo/store/products/{demo_server.services[INTRO]}")
    page.locator(".cb-day").first.click()
    expect(page.locator(".cb-slot").first).to_be_visible()
    expect(page.get_by_label("Your time zone")).to_have_value("Asia/Tokyo")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways ({width}px wide)"
    box = page.locator(".cb-slot").first.bounding_box()
    assert box is not None and box["height"] >= 44  # a comfortable touch target


def test_every_admin_section_opens_without_errors(demo_server: DemoServer,
                                                  browser: Any) -> None:
    page = new_page(browser, "Europe/Berlin")
    page.goto(f"{demo_server.base}/demo/admin")
    app = page.frame_locator("iframe.app-frame")
    expect(app.get_by_role("heading", name="Home", level=2)).to_be_visible()
    app.get_by_role("link", name="Services", exact=True).click()
    expect(app.get_by_role("heading", name="Services")).to_be_visible()
    expect(app.get_by_role("cell", name=INTRO, exact=True)).to_be_visible()
    for link, heading in [("Experts", "Experts"), ("Hours", "Working hours"),
                          ("Bookings", "Bookings"), ("Refunds", "Refund log"),
                          ("Export", "Export"), ("Settings", "Settings"),
                          ("Connections", "Connections"), ("Services", "Services")]:
        app.get_by_role("link", name=link, exact=True).click()
        expect(app.get_by_role("heading", name=heading, exact=True)).to_be_focused()
        expect(app.locator("main p", has_text="Loading…")).to_have_count(0)
        expect(app.locator("#alert")).to_have_text("")
    # A settings round trip through the form.
    app.get_by_role("link", name="Settings", exact=True).click()
    app.get_by_label("Reminders (minutes before the start)").fill("2880, 30")
    app.get_by_role("button", name="Save settings").click()
    expect(app.locator("#status")).to_have_text("Settings saved.")
    expect(app.get_by_label("Reminders (minutes before the start)")).to_have_value("2880, 30")
    assert page.js_errors == []  # type: ignore[attr-defined]
