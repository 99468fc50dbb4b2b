"""Take the README's screenshots from a fresh `consultbook demo`.

    python3 scripts/screenshots.py            # writes docs/screenshots/*.png

Starts the demo on a free port with a throw-away SQLite database and outbox, books a few
consultations through the demo store, then drives Debian's Chromium through Playwright:

* storefront.png -- a customer in Los Angeles: the month grid, a day chosen, its times
  (desktop), before booking one;
* storefront-phone.png -- a German shop on a phone (390 x 844), a customer in India;
* admin-home.png -- the embedded admin's home page: the business at a glance;
* admin.png -- the admin's bookings calendar, a week with bookings in it.
"""

from __future__ import annotations

import re
import signal
import tempfile
from pathlib import Path
from typing import Any

import requests
from demo_process import DEMO_TZ, demo_tomorrow, start_demo  # scripts/ is on sys.path
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SHOTS = ("storefront.png", "storefront-phone.png", "admin-home.png", "admin.png")


def book_via_store(base: str, service: str, variant: str, count: int) -> None:
    """``count`` paid bookings through the demo store (hold, cart, checkout), so the
    admin has a business to show."""
    start = demo_tomorrow().isoformat()
    slots = requests.get(f"{base}/demo/store/apps/consult/availability", timeout=20, params={
        "service": service, "start": start, "days": "10", "tz": DEMO_TZ}).json()["slots"]
    names = [("Noah", "Schmidt"), ("Aiko", "Tanaka"), ("Sofia", "Rossi"), ("Liam", "Byrne"),
             ("Mia", "Weber"), ("Omar", "Haddad")]
    by_day: dict[str, dict[str, Any]] = {}
    for slot in slots:  # the first time of each day, over the next days
        by_day.setdefault(str(slot["local"])[:10], slot)
    for i, slot in enumerate(list(by_day.values())[:count]):
        shopper = requests.Session()
        r = shopper.post(f"{base}/demo/store/apps/consult/holds", timeout=20,
                         headers={"X-Forwarded-For": f"198.51.100.{20 + i}"},
                         json={"service": service, "expert": slot["expert"],
                               "start": slot["start"], "tz": DEMO_TZ})
        if r.status_code != 201:
            continue
        hold = r.json()
        shopper.post(f"{base}/demo/store/cart/add.js", timeout=20, json={"items": [{
            "id": int(variant), "quantity": 1,
            "properties": hold.get("line_item_properties") or {"_hold": hold["hold"]}}]})
        first, last = names[i % len(names)]
        shopper.post(f"{base}/demo/store/checkout", timeout=20, data={
            "first_name": first, "last_name": last, "email": f"{first.lower()}@example.com"})


def storefront(page: Page, base: str) -> None:
    """A customer in Los Angeles: the month grid, a day chosen, its times (desktop)."""
    page.goto(f"{base}/demo/store")
    page.get_by_role("link", name="Intro call (30 min)").click()
    calendar = page.locator("[data-consultbook-booking]")
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    page.get_by_label("Expert").select_option(label="Anna Berger")
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    page.locator(".cb-day").nth(1).click()
    expect(page.locator(".cb-slot").first).to_be_visible()
    page.mouse.move(0, 0)
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / "storefront.png"), full_page=True)


def checkout(page: Page) -> None:
    page.locator(".cb-slot").nth(2).click()
    expect(page.locator(".cb-hold")).to_be_visible()
    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url("**/demo/store/cart")
    page.get_by_label("First name").fill("Lena")
    page.get_by_label("Last name").fill("Lopez")
    page.get_by_label("Email").fill("lena@example.com")
    page.get_by_role("button", name="Pay", exact=False).click()
    expect(page.get_by_role("heading", name="Thank you, Lena!")).to_be_visible()


def storefront_phone(page: Page, base: str, service: str) -> None:
    """A German shop on a phone, a customer in India: the month grid and a day's times."""
    page.goto(f"{base}/demo/store/apps/consult/book?service={service}&locale=de")
    calendar = page.locator("[data-consultbook-booking]")
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    page.locator(".cb-day").first.tap()
    expect(page.locator(".cb-slot").first).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / "storefront-phone.png"), full_page=True)


def admin(page: Page, base: str) -> None:
    """The merchant: the home page's numbers, then the bookings calendar's week."""
    page.goto(f"{base}/demo/admin")
    app = page.frame_locator("iframe.app-frame")
    expect(app.get_by_role("heading", name="Home", level=2)).to_be_visible()
    expect(app.locator("#home-bookings-total-value")).not_to_have_text("0")
    page.wait_for_timeout(600)
    page.screenshot(path=str(OUT / "admin-home.png"))
    app.get_by_role("link", name="Bookings", exact=True).click()
    expect(app.get_by_role("heading", name="Bookings", level=2)).to_be_visible()
    for _ in range(3):
        holder = app.locator("#bookings-calendar")
        expect(holder).not_to_have_attribute("aria-busy", "true")
        if app.locator(".chip-button").count():
            break
        app.get_by_role("button", name=re.compile("^Next week")).click()
    page.wait_for_timeout(400)
    page.screenshot(path=str(OUT / "admin.png"))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_demo(Path(tmp))
        try:
            ids = {m.group(2).strip(): m.group(1) for m in re.finditer(
                r"^\s+service:\s+(\S+)\s+(.+)$", (Path(tmp) / "server.log").read_text(),
                re.MULTILINE)}
            book_via_store(base, ids["Deep-dive session (60 min)"], "4100000000002", 5)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM)
                customer = browser.new_context(timezone_id="America/Los_Angeles", locale="en-US",
                                               viewport={"width": 1100, "height": 900})
                page = customer.new_page()
                storefront(page, base)
                checkout(page)
                mobile = browser.new_context(timezone_id="Asia/Kolkata", locale="de-DE",
                                             viewport={"width": 390, "height": 844},
                                             device_scale_factor=2, is_mobile=True,
                                             has_touch=True)
                storefront_phone(mobile.new_page(), base, ids["Intro call (30 min)"])
                merchant = browser.new_context(timezone_id="Europe/Berlin", locale="en-GB",
                                               viewport={"width": 1280, "height": 900})
                admin(merchant.new_page(), base)
                browser.close()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
    for name in SHOTS:
        print(OUT / name)


if __name__ == "__main__":
    main()
