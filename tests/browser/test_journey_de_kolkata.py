"""A whole journey in Chromium: a German-language shop, a customer in India.

A customer whose browser is in ``Asia/Kolkata`` (which Chromium's ICU may report as
``Asia/Calcutta``; the block resolves the alias) and speaks German books the workshop on
the product page (the theme block, ``?locale=de``) with the keyboard alone -- Tab into the
month grid, arrows to a day, Enter, Tab to a time, Enter, the intake questions answered,
the hold added to the cart, the demo's checkout paid -- and sees every time in India
Standard Time and the German strings. A second customer books an intro call on a phone
(390 x 844, touch). The merchant then finds both on the admin home's numbers and
reschedules the phone booking from the bookings calendar.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
from playwright.sync_api import Page, expect

from tests.browser.admin_calendar_steps import reschedule_from_calendar
from tests.browser.conftest import DemoServer
from tests.browser.test_storefront_calendar import INTRO, MONTHS_DE, new_page, ready

WORKSHOP = "Group workshop (90 min)"
KOLKATA = ZoneInfo("Asia/Kolkata")
BERLIN = ZoneInfo("Europe/Berlin")


def instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def active(page: Page, expression: str) -> Any:
    """``expression`` evaluated with ``a`` bound to the focused element."""
    return page.evaluate(f"(() => {{ const a = document.activeElement; return {expression}; }})()")


def tab_to(page: Page, condition: str, limit: int = 40) -> None:
    """Press Tab until the focused element ``a`` satisfies ``condition`` (JS)."""
    for _ in range(limit):
        if active(page, f"!!a && !!({condition})"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached an element where {condition}; at "
                         + str(active(page, "a && a.outerHTML.slice(0, 200)")))


def bookings(server: DemoServer) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    r = requests.get(f"{server.base}/admin/api/bookings", timeout=10,
                     headers={"Authorization": f"Bearer {server.admin_token()}"},
                     params={"from": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "to": (now + timedelta(days=120)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert r.status_code == 200, r.text
    return list(r.json()["bookings"])


def pay_by_keyboard(page: Page, first: str, last: str, email: str) -> None:
    """The demo's checkout form, filled and sent with the keyboard."""
    page.wait_for_url("**/demo/store/cart")
    for field, value in (("first_name", first), ("last_name", last), ("email", email)):
        tab_to(page, f"a.id === '{field}'")
        page.keyboard.type(value)
    page.keyboard.press("Tab")
    assert active(page, "a.tagName === 'BUTTON' && a.textContent.startsWith('Pay')")
    page.keyboard.press("Enter")
    expect(page.locator(".webhook")).to_have_attribute("data-webhook-status", "200")


def test_german_shop_customer_in_kolkata_keyboard_phone_then_merchant_reschedules(
        demo_server: DemoServer, browser: Any) -> None:
    base = demo_server.base
    # ------------------------------------------------------------ desktop, keyboard only
    page = new_page(browser, "Asia/Kolkata", locale="de-DE",
                    viewport={"width": 1200, "height": 900})
    holds: list[dict[str, Any]] = []
    page.on("request", lambda r: holds.append(json.loads(r.post_data or "{}"))
            if r.url.split("?")[0].endswith("/holds") and r.method == "POST" else None)
    page.goto(f"{base}/demo/store/products/{demo_server.services[WORKSHOP]}?locale=de")
    ready(page)
    root = page.locator("[data-consultbook-booking]")
    expect(root).to_have_attribute("lang", re.compile("^de"))
    # India, whatever ICU calls it: the zone, its offset and city, in German.
    expect(page.get_by_label("Ihre Zeitzone")).to_have_value("Asia/Kolkata")
    expect(page.locator(".cb-tz-desc")).to_contain_text("Kolkata, UTC+05:30")
    expect(page.get_by_role("button", name="Nächster Monat")).to_be_visible()
    month = page.locator(".cb-month").inner_text()
    assert re.fullmatch(rf"({'|'.join(MONTHS_DE)}) \d{{4}}", month), month
    expect(page.locator(".cb-shop-tz")).to_contain_text("Europe/Berlin")

    page.locator("body").focus()
    tab_to(page, "a.closest('.cb-grid')")  # the grid's one tab stop
    first = str(active(page, "a.dataset.date"))
    # Arrows to the next day with times after the one the grid offers first (a month
    # boundary crossed on the way loads the next month: wait for it).
    for _ in range(60):
        page.keyboard.press("ArrowRight")
        if active(page, "a.classList.contains('cb-pending')"):
            ready(page)
        if active(page, "a.classList.contains('cb-day')"):
            break
    day = str(active(page, "a.dataset.date"))
    assert day > first and active(page, "a.classList.contains('cb-day')"), (first, day)
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name=re.compile("^Termine am"))
    expect(heading).to_be_focused()
    assert re.fullmatch(rf"Termine am \w+, \d{{1,2}}\. ({'|'.join(MONTHS_DE)}) \d{{4}}",
                        heading.inner_text())
    page.keyboard.press("Tab")
    assert active(page, "a.classList.contains('cb-slot')")
    start = str(active(page, "a.dataset.start"))
    shown = str(active(page, "a.querySelector('.cb-slot-time').textContent"))
    ist = instant(start).astimezone(KOLKATA)
    assert shown == ist.strftime("%H:%M"), (shown, start)  # India's wall clock
    assert ist.date().isoformat() == day  # filed under India's date
    # The workshop runs 09:00-17:00 in Berlin: in India that is the afternoon and evening.
    assert 13 <= ist.hour <= 22
    page.keyboard.press("Enter")

    # The intake questions (merchant text as entered), by keyboard.
    expect(page.get_by_role("heading", name=re.compile("^Ihre Angaben für"))).to_be_focused()
    tab_to(page, "a.tagName === 'TEXTAREA'")
    page.keyboard.type("Mehr Sicherheit im Umgang mit Kunden")
    tab_to(page, "a.tagName === 'SELECT' && a.name === 'level'")
    page.keyboard.press("ArrowDown")  # Beginner
    assert active(page, "a.value") == "Beginner"
    tab_to(page, "a.textContent === 'Diesen Termin reservieren'")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Dieser Termin ist für Sie reserviert")).to_be_focused()
    assert holds and holds[-1]["tz"] == "Asia/Kolkata" and holds[-1]["start"] == start
    summary = page.locator(".cb-hold-summary")
    expect(summary).to_contain_text(ist.strftime("%H:%M"))
    expect(summary).to_contain_text("Asia/Kolkata")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="In den Warenkorb")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url("**/demo/store/cart")
    held = page.locator(".held-time")
    expect(held).to_contain_text(ist.strftime("%H:%M"))
    expect(held).to_contain_text("Europe/Berlin")
    pay_by_keyboard(page, "Kiran", "Rao", "kiran@example.com")
    [workshop] = bookings(demo_server)
    assert workshop["start"] == start and workshop["status"] == "confirmed"
    assert page.js_errors == []  # type: ignore[attr-defined]

    # ------------------------------------------------------------ a phone, by touch
    phone = new_page(browser, "Asia/Kolkata", locale="de-DE",
                     viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                     device_scale_factor=3)
    phone.goto(f"{base}/demo/store/apps/consult/book?service={demo_server.services[INTRO]}"
               "&locale=de")
    ready(phone)
    expect(phone.get_by_role("heading", name=f"Buchen: {INTRO}")).to_be_visible()
    expect(phone.get_by_label("Ihre Zeitzone")).to_have_value("Asia/Kolkata")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.locator(".cb-day").first.tap()
    expect(phone.get_by_role("heading", name=re.compile("^Termine am"))).to_be_focused()
    slot = phone.locator(".cb-slot").first
    phone_start = slot.get_attribute("data-start") or ""
    expect(slot.locator(".cb-slot-time")).to_have_text(
        instant(phone_start).astimezone(KOLKATA).strftime("%H:%M"))
    box = slot.bounding_box()
    assert box is not None and box["height"] >= 44 and box["x"] + box["width"] <= 390
    slot.tap()
    held_title = phone.get_by_role("heading", name="Dieser Termin ist für Sie reserviert")
    expect(held_title).to_be_visible()
    phone.get_by_role("button", name="In den Warenkorb").tap()
    phone.wait_for_url("**/demo/store/cart")
    phone.get_by_label("First name").fill("Priya")
    phone.get_by_label("Last name").fill("Nair")
    phone.get_by_label("Email").fill("priya@example.com")
    phone.get_by_role("button", name=re.compile("^Pay")).tap()
    expect(phone.locator(".webhook")).to_have_attribute("data-webhook-status", "200")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    made = {b["start"]: b for b in bookings(demo_server)}
    assert set(made) == {start, phone_start}
    intro = made[phone_start]
    assert phone.js_errors == []  # type: ignore[attr-defined]

    # ------------------------------------------------------------ the merchant
    admin = new_page(browser, "Europe/Berlin", viewport={"width": 1280, "height": 900})
    admin.goto(f"{base}/demo/admin")
    app = admin.frame_locator("iframe.app-frame")
    expect(app.get_by_role("heading", name="Home", level=2)).to_be_visible()
    expect(app.locator("#home-bookings-total-value")).to_have_text("2")
    expect(app.locator("#home-revenue-total-value")).to_contain_text("84")  # 35 + 49 EUR
    today = datetime.now(BERLIN).date()
    today_card = app.locator("section.today")
    for who, when in (("Kiran Rao", start), ("Priya Nair", phone_start)):
        if instant(when).astimezone(BERLIN).date() == today:
            expect(today_card).to_contain_text(who)

    # Reschedule Priya's call from the calendar to another free time of her expert.
    old_day = instant(phone_start).astimezone(BERLIN).date()
    free = demo_server.proxy("GET", "availability", {
        "service": demo_server.services[INTRO], "expert": intro["expert"],
        "start": (old_day + timedelta(days=1)).isoformat(), "days": "14"}).json()["slots"]
    target = next(s for s in free if instant(s["start"]).astimezone(BERLIN).date() != old_day)
    new = instant(target["start"]).astimezone(BERLIN)
    reschedule_from_calendar(admin, "Priya Nair", new.date().isoformat(), new.strftime("%H:%M"),
                             day_iso=old_day.isoformat())
    moved = {b["id"]: b for b in bookings(demo_server)}[intro["id"]]
    assert instant(moved["start"]) == instant(target["start"])
    assert moved["status"] == "confirmed"
    assert admin.js_errors == []  # type: ignore[attr-defined]
