"""The merchant sees each step a customer takes on their own booking (issue 12): the
customer reschedules and then cancels through the App Proxy API with the manage link
from their confirmation mail, and the admin's bookings list, reloaded after each step,
shows the new time, then the cancellation and who made it.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import FrameLocator, Locator, Page, expect

from tests.browser.conftest import DemoServer
from tests.browser.test_admin_capacity import all_bookings, far_from, instant, local_parts
from tests.browser.test_admin_providers_browser import BERLIN, DEEP, book, monday, open_admin

MANAGE = re.compile(r"https://\S+/apps/consult/manage\?booking=[^\s\"<>]+")


def manage_link(server: DemoServer, email: str, timeout: float = 30) -> tuple[str, str]:
    """(booking id, token) from the manage link in the customer's confirmation mail."""
    deadline = time.monotonic() + timeout
    while True:
        for path in server.mails():
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if email not in str(message["To"]):
                continue
            part = message.get_body(preferencelist=("plain",))
            found = MANAGE.search(part.get_content() if part is not None else "")
            if found:
                query = parse_qs(urlsplit(found.group(0)).query)
                return query["booking"][0], query["token"][0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no mail with a manage link to {email} in {server.outbox}")
        time.sleep(0.3)


def open_week(page: Page, app: FrameLocator, server: DemoServer, week: Any) -> Locator:
    """Reload the admin and open the bookings of ``week``; the row of Carla's booking."""
    page.reload()
    expect(app.get_by_role("heading", name="Home", level=2)).to_be_visible()
    app.get_by_role("link", name="Bookings", exact=True).click()
    for _ in range((week - monday(datetime.now(BERLIN).date())).days // 7):
        app.get_by_role("button", name="Next week \u203a").click()
    row = app.get_by_role("row", name=re.compile("Carla Customer"))
    expect(row).to_be_visible()
    return row


def test_the_admin_sees_a_customers_reschedule_and_cancel(
        demo_server: DemoServer, browser: Any) -> None:
    # Far enough ahead that the default policy (24 hours' notice) lets the customer act.
    start = (datetime.now(BERLIN) + timedelta(days=2)).date()
    slots = demo_server.proxy("GET", "availability", {
        "service": demo_server.services[DEEP], "start": start.isoformat(), "days": "14"}
    ).json()["slots"]
    first = slots[0]
    week = monday(datetime.fromisoformat(first["local"]).date())
    same = [s for s in slots if s["expert"] == first["expert"]
            and monday(datetime.fromisoformat(s["local"]).date()) == week]
    target = next(s for s in same if far_from(s, first))
    book(demo_server, first, 9201, paid=True, name="Carla Customer")
    booking, token = manage_link(demo_server, "carla@example.com")
    assert all_bookings(demo_server)["9201"]["id"] == booking

    page, app = open_admin(demo_server, browser)
    row = open_week(page, app, demo_server, week)
    start_cell = row.get_by_role("cell").first
    expect(row.get_by_role("cell", name="confirmed", exact=True)).to_be_visible()
    expect(start_cell).to_contain_text(local_parts(first["start"])[1])
    before = start_cell.inner_text()

    # Step 1: the customer moves it through the App Proxy.
    r = demo_server.proxy("POST", f"bookings/{booking}/reschedule",
                          json={"token": token, "start": target["start"]})
    assert r.status_code == 200, r.text
    assert r.json()["booking"]["start"] == target["start"]
    row = open_week(page, app, demo_server, week)
    start_cell = row.get_by_role("cell").first
    expect(start_cell).not_to_have_text(before)
    expect(start_cell).to_contain_text(local_parts(target["start"])[1])
    expect(row.get_by_role("cell", name="confirmed", exact=True)).to_be_visible()
    expect(row.get_by_role("button", name=re.compile("^Reschedule the booking of Carla"))
           ).to_be_visible()
    # The week view shows it once, at the new time.
    expect(app.locator(".chip", has_text="Carla Customer")).to_have_count(1)
    assert instant(all_bookings(demo_server)["9201"]["start"]) == instant(target["start"])

    # Step 2: the customer cancels: cancelled, by the customer, nothing left to act on.
    r = demo_server.proxy("POST", f"bookings/{booking}/cancel", json={"token": token})
    assert r.status_code == 200, r.text
    assert r.json()["booking"]["status"] == "cancelled"
    row = open_week(page, app, demo_server, week)
    expect(row.get_by_role("cell", name="cancelled", exact=True)).to_be_visible()
    expect(row.get_by_role("button")).to_have_count(0)
    expect(app.locator(".chip.cancelled", has_text="Carla Customer")).to_have_count(1)
    # Who cancelled it (the booking's cancelled_by in GET /admin/api/bookings).
    expect(row).to_contain_text("Cancelled by the customer")
    assert page.js_errors == []  # type: ignore[attr-defined]
