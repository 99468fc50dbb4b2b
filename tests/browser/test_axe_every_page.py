"""axe-core on every page the project serves to people, in Chromium: zero serious or
critical violations anywhere.

One `consultbook demo` with a real booking in it (so the manage page, the bookings
calendar, the home page's numbers and the outbox have something to show), then each
page in turn: the storefront's (the booking block on the product page, ``/proxy/book``
with its times, the hold, the intake questions and the waiting list, the manage page,
the my-bookings page, the cart and the paid order), the demo's own (index, store, admin
frame, outbox and a message), and every section of the embedded admin, including the
reschedule and cancel dialogs and the page an OAuth connection's callback ends on.
axe runs over the whole document (inside the admin's frame for the admin), so the
surroundings count as much as the block.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import requests
from playwright.sync_api import Frame, Page, expect

from engine.demo import DEMO_SHOP, DEMO_TZ
from tests.browser.conftest import DemoServer
from tests.browser.test_admin_plugin_forms import admin_frame
from tests.browser.test_admin_providers_browser import DEEP, book
from tests.browser.test_manage_flow import manage_link
from tests.browser.test_storefront_calendar import (
    INTRO,
    axe_js,  # noqa: F401 (a fixture)
    new_page,
    ready,
)

WORKSHOP = "Group workshop (90 min)"
# The admin's navigation: link -> the section's heading.
ADMIN_SECTIONS = {"Home": "Home", "Services": "Services", "Experts": "Experts",
                  "Hours": "Working hours", "Bookings": "Bookings", "Refunds": "Refund log",
                  "Export": "Export", "Settings": "Settings", "Connections": "Connections"}


def axe_document(where: Page | Frame, source: str, what: str) -> list[str]:
    """axe over the whole document of ``where``; the ids of serious/critical violations
    (every violation is printed, with its first targets)."""
    if not where.evaluate("typeof window.axe !== 'undefined'"):
        where.add_script_tag(content=source)
    result = where.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    print(f"\naxe {what}: {len(result['violations'])} violations, {len(bad)} serious/critical"
          + "".join(f"\n  {v['impact']} {v['id']}: {v['help']} "
                    f"{[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]))
    return [v["id"] for v in bad]


def _paid_booking(server: DemoServer) -> dict[str, Any]:
    """A paid Deep-dive booking through the webhook, more than two days ahead (so the
    manage page offers both changes); the availability slot it took."""
    start = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    slot = server.proxy("GET", "availability", {
        "service": server.services[DEEP], "start": start, "days": "14"}).json()["slots"][0]
    book(server, slot, 8801, paid=True, name="Ada Axe")
    return dict(slot)


def test_every_page_has_no_serious_or_critical_violations(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    problems: dict[str, list[str]] = {}
    base = demo_server.base
    slot = _paid_booking(demo_server)

    def check(where: Page | Frame, what: str) -> None:
        problems[what] = axe_document(where, axe_js, what)

    # ---------------------------------------------------------------- the storefront
    page = new_page(browser, "America/New_York")
    page.goto(f"{base}/demo")
    check(page, "demo index")
    page.goto(f"{base}/demo/store")
    check(page, "store home")
    page.goto(f"{base}/demo/store/products/{demo_server.services[INTRO]}")
    ready(page)
    check(page, "product page with the booking block")
    page.goto(f"{base}/demo/store/products/{demo_server.services[INTRO]}?block=off")
    expect(page.locator("[data-consultbook-booking]")).to_have_count(0)
    check(page, "product page without the block")

    book_page = f"{base}/demo/store/apps/consult/book?service={demo_server.services[INTRO]}"
    page.goto(book_page)
    ready(page)
    check(page, "/proxy/book month grid")
    page.locator(".cb-day").first.click()
    expect(page.locator(".cb-slot").first).to_be_visible()
    check(page, "/proxy/book times")
    zone = page.get_by_label("Your time zone")
    zone.click()
    zone.fill("new")
    expect(page.locator(".cb-tz-option").first).to_be_visible()
    check(page, "/proxy/book zone search")
    page.keyboard.press("Escape")
    page.get_by_label("Expert").select_option(label="Anna Berger")
    ready(page)
    # A day of this month without times (Anna keeps weekends free) offers the waiting list.
    # A day after today in the shop's zone as well as the customer's (New York): the
    # waiting list takes a shop-local date, and in the hours when the shop's today is
    # the customer's tomorrow the customer's today has passed there.
    shop_today = datetime.now(ZoneInfo(DEMO_TZ)).date().isoformat()
    off = ".cb-grid button.cb-off[aria-pressed]:not([aria-disabled='true'])"
    later = [d for d in page.locator(off).evaluate_all("els => els.map(e => e.dataset.date)")
             if d > shop_today]
    if not later:
        page.get_by_role("button", name="Next month").click()
        ready(page)
        later = page.locator(off).evaluate_all("els => els.map(e => e.dataset.date)")
    page.locator(f".cb-cell[data-date='{later[0]}']").click()
    offer = page.get_by_role("button", name="Tell me when a time frees up")
    expect(offer).to_be_visible()
    offer.click()
    expect(page.get_by_label("Your email")).to_be_focused()
    check(page, "/proxy/book waiting list form")
    page.get_by_label("Your email").fill("wait@example.com")
    page.get_by_role("button", name="Notify me").click()
    expect(page.locator(".cb-done")).to_contain_text("Thank you. We will email you")
    check(page, "/proxy/book waiting list joined")

    page.locator(".cb-day").first.click()
    page.locator(".cb-slot").first.click()
    expect(page.get_by_role("heading", name="This time is held for you")).to_be_visible()
    check(page, "/proxy/book hold")
    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url("**/demo/store/cart")
    check(page, "cart")
    page.get_by_label("First name").fill("Axel")
    page.get_by_label("Last name").fill("Audit")
    page.get_by_label("Email").fill("axel@example.com")
    page.get_by_role("button", name=re.compile("^Pay")).click()
    expect(page.locator(".webhook")).to_have_attribute("data-webhook-status", "200")
    check(page, "order paid")

    page.goto(f"{base}/demo/store/apps/consult/book?service={demo_server.services[WORKSHOP]}")
    ready(page)
    page.locator(".cb-day").first.click()
    page.locator(".cb-slot").first.click()
    expect(page.get_by_label(re.compile("What would you like to get out of it"))).to_be_visible()
    check(page, "/proxy/book intake questions")
    page.get_by_role("button", name="Hold this time").click()
    expect(page.locator("[aria-invalid=true]").first).to_be_visible()
    check(page, "/proxy/book intake questions with an error")

    booking_id, token = manage_link(demo_server, "ada@example.com")
    page.goto(f"{base}/demo/store/apps/consult/manage?booking={quote(booking_id)}"
              f"&token={quote(token)}")
    root = page.locator("[data-consultbook-manage]")
    expect(root).to_have_class(re.compile("cb-ready"))
    expect(root.locator("[data-fact=status] dd")).to_have_text("Confirmed")
    check(page, "manage page")
    page.get_by_role("button", name="Change the time").click()
    calendar = page.locator(".cb-reschedule [data-consultbook-booking]")
    expect(calendar).to_have_class(re.compile("cb-ready"))
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    check(page, "manage page, reschedule calendar")
    page.goto(f"{base}/demo/store/apps/consult/manage?booking=nope&token=nope")
    expect(page.get_by_role("alert")).to_be_visible()
    check(page, "manage page, wrong link")
    page.goto(f"{base}/demo/store/apps/consult/my-bookings/page")
    expect(page.locator(".cb-login")).to_be_visible()
    check(page, "my-bookings page")

    page.goto(f"{base}/demo/outbox")
    check(page, "outbox")
    page.locator("table.outbox a").first.click()
    expect(page.get_by_role("link", name="Raw message")).to_be_visible()
    check(page, "outbox message")

    # ---------------------------------------------------------------- the admin
    admin = new_page(browser, "Europe/Berlin", viewport={"width": 1280, "height": 900})
    admin.goto(f"{base}/demo/admin")
    app = admin.frame_locator("iframe.app-frame")
    expect(app.get_by_role("heading", name="Home", level=2)).to_be_visible()
    check(admin, "demo admin frame (Shopify's shell)")
    for name, heading in ADMIN_SECTIONS.items():
        app.get_by_role("link", name=name, exact=True).click()
        expect(app.get_by_role("heading", name=heading, level=2, exact=True)).to_be_visible()
        expect(app.locator("#loading")).to_have_count(0)
        admin.wait_for_timeout(200)  # the section's own data
        check(admin_frame(admin), f"admin {name}")

    # The bookings calendar with the booking in it, and its dialogs.
    app.get_by_role("link", name="Bookings", exact=True).click()
    day = datetime.fromisoformat(slot["local"]).date()
    today = datetime.now(ZoneInfo(DEMO_TZ)).date()
    for _ in range(max(0, (day - today).days // 7 + 1)):
        if app.get_by_role("button", name=re.compile("^Reschedule.*Ada Axe")).count():
            break
        app.get_by_role("button", name=re.compile("^Next")).first.click()
        admin.wait_for_timeout(300)
    opener = app.get_by_role("button", name=re.compile("^Reschedule.*Ada Axe")).first
    if opener.count():
        opener.click()
        expect(app.get_by_role("dialog")).to_be_visible()
        check(admin_frame(admin), "admin reschedule dialog")
        admin.keyboard.press("Escape")
    cancel = app.get_by_role("button", name=re.compile("^Cancel the booking of Ada Axe")).first
    if cancel.count():
        cancel.click()
        expect(app.get_by_role("dialog", name="Cancel this booking?")).to_be_visible()
        check(admin_frame(admin), "admin cancel dialog")
        admin.keyboard.press("Escape")

    # Where an OAuth connection's callback lands (with an error to show).
    query = urlencode({"embedded": "1", "shop": DEMO_SHOP, "connection": "google",
                       "status": "error", "message": "The account did not grant access"})
    admin.goto(f"{base}/admin?{query}")
    expect(admin.get_by_role("heading", level=2, name="Connections")).to_be_visible()
    expect(admin.locator("#alert")).to_contain_text("could not be connected: The account "
                                                    "did not grant access")
    assert "connection=" not in admin.url and admin.url.endswith("#connections")
    check(admin, "admin after an OAuth callback (error)")
    query = urlencode({"embedded": "1", "shop": DEMO_SHOP, "connection": "google",
                       "status": "connected"})
    admin.goto(f"{base}/admin?{query}")
    expect(admin.get_by_role("heading", level=2, name="Connections")).to_be_visible()
    expect(admin.locator("#status")).to_contain_text("is connected")
    check(admin, "admin after an OAuth callback (connected)")

    # The OAuth callback answers a bad request with a JSON error, not a page.
    r = requests.get(f"{base}/auth/google/callback?state=x&code=y", timeout=10)
    assert 400 <= r.status_code < 500 and set(r.json()["error"]) >= {"code", "message"}
    assert r.headers["content-type"].startswith("application/json")

    assert len(problems) >= 30, sorted(problems)
    assert {k: v for k, v in problems.items() if v} == {}
    assert page.js_errors == []  # type: ignore[attr-defined]
    assert admin.js_errors == []  # type: ignore[attr-defined]
