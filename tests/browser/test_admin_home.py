"""The admin's home page in a real browser (the demo): the first thing the merchant
sees, with a booking made through the storefront counted in its week, its revenue and
its expert's fill rate (the charts' text alternatives read back), the period switched
from the keyboard, nothing moving while the numbers load, and axe-core content.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import DemoServer
from tests.browser.test_admin_plugin_forms import axe_connections as axe_main
from tests.browser.test_admin_providers_browser import BERLIN, DEEP, book, monday
from tests.browser.test_demo_browser import new_page
from tests.browser.test_storefront_calendar import axe_js  # noqa: F401 (a fixture)

# Layout shifts of the admin frame from its first paint on (the Layout Instability API),
# summed as CLS would (without session windows: stricter).
SHIFTS = """() => new Promise(resolve => {
  let total = 0;
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value;
  }).observe({type: 'layout-shift', buffered: true});
  setTimeout(() => resolve(total), 300);
})"""


def test_the_home_page_shows_the_business_at_a_glance(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    today = datetime.now(BERLIN).date()
    slot = demo_server.proxy("GET", "availability", {
        "service": demo_server.services[DEEP], "start": today.isoformat(), "days": "14"}
    ).json()["slots"][0]
    book(demo_server, slot, 7301, paid=True, name="Hana Home")
    day = datetime.fromisoformat(slot["local"]).date()
    expert = next(name for name, i in demo_server.experts.items() if i == slot["expert"])

    page = new_page(browser, "Europe/Berlin")
    page.goto(f"{demo_server.base}/demo/admin")
    app = page.frame_locator("iframe.app-frame")
    expect(app.get_by_role("heading", name="Home", level=2)).to_be_visible()
    expect(app.get_by_role("link", name="Home")).to_have_attribute("aria-current", "page")
    expect(app.locator("#home-range")).to_contain_text("Showing")

    # The booking, in numbers: one booking, its price, in the week it takes place.
    expect(app.locator("#home-bookings-total-value")).to_have_text("1")
    expect(app.locator("#home-revenue-total-value")).to_contain_text("120")
    expect(app.get_by_role("heading", name="Revenue per week (EUR)")).to_be_visible()
    per_week = app.get_by_role("table", name="Bookings per week")
    assert per_week.locator("tbody tr").count() == 9  # 8 weeks and the next one
    week_row = per_week.locator("tbody tr").filter(has_text=_iso_week(day))
    expect(week_row.locator("td").first).to_have_text("1")
    fill = app.get_by_role("table", name="Fill rate per expert")
    expect(fill.locator("tr").filter(has_text=expert).locator("td").nth(1)).to_have_text(
        "1 h")
    expect(fill.locator("tr").filter(has_text=expert).locator("td").first).to_have_text(
        re.compile(r"^\d+(\.\d+)?%$"))
    expect(app.locator("#home-refunds-value")).to_have_text("0")
    expect(app.locator("#home-cancellations-value")).to_have_text("0")
    today_card = app.locator("section.today")
    if day == today:
        expect(today_card).to_contain_text("Hana Home")
    else:
        expect(today_card).to_contain_text("No bookings today.")

    # Nothing moved while the numbers came in.
    frame = next(f for f in page.frames if f != page.main_frame and "/admin" in f.url)
    assert frame.evaluate(SHIFTS) < 0.01

    problems = {"home": axe_main(page, axe_js, "home")}

    # The period, switched with the keyboard (a radio group: arrow keys move and choose).
    app.get_by_label("8 weeks").focus()
    page.keyboard.press("ArrowRight")
    expect(app.get_by_label("6 months")).to_be_checked()
    expect(per_week.locator("tbody tr")).to_have_count(27)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(app.get_by_label("4 weeks")).to_be_checked()
    expect(per_week.locator("tbody tr")).to_have_count(5)
    if monday(day) <= monday(today) + timedelta(days=7):  # still inside the 4 weeks
        expect(app.locator("#home-bookings-total-value")).to_have_text("1")
    problems["home, 4 weeks"] = axe_main(page, axe_js, "home, 4 weeks")

    # The other sections still work from the navigation.
    app.get_by_role("link", name="Services", exact=True).click()
    expect(app.get_by_role("heading", name="Services", level=2)).to_be_visible()
    app.get_by_role("link", name="Home", exact=True).click()
    expect(app.get_by_label("4 weeks")).to_be_checked()  # the period is remembered
    assert {k: [v["id"] for v in bad] for k, bad in problems.items() if bad} == {}
    assert page.js_errors == []  # type: ignore[attr-defined]


def _iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"
