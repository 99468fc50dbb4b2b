"""A customer manages their booking from the mail alone (issue 12), in Chromium.

The customer's browser is in Los Angeles, the shop in Berlin. They book through the demo
storefront, the (simulated) Shopify checkout delivers the signed webhook, the worker mails
the confirmation into the outbox, and the manage link is taken from that mail. The manage
page shows the booking in both zones and what the policy allows; the customer moves it
with the same month calendar, then cancels it through the confirmation dialog. The admin
API sees each step. axe-core on the page and the dialog.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from html import unescape
from typing import Any
from zoneinfo import ZoneInfo

import requests
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import DemoServer
from tests.browser.test_storefront_calendar import axe_js, new_page, ready  # noqa: F401

BERLIN = ZoneInfo("Europe/Berlin")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
INTRO = "Intro call (30 min)"
LINK = re.compile(r"/manage\?booking=([A-Za-z0-9_-]+)&(?:amp;)?token=([A-Za-z0-9_-]+)")


def instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def bookings(server: DemoServer) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    r = requests.get(f"{server.base}/admin/api/bookings", timeout=10,
                     headers={"Authorization": f"Bearer {server.admin_token()}"},
                     params={"from": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "to": (now + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert r.status_code == 200, r.text
    return list(r.json()["bookings"])


def axe_on(page: Page, source: str, selector: str, what: str) -> list[str]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=source)
    result = page.evaluate("(s) => axe.run(document.querySelector(s), {resultTypes: "
                           "['violations']})", selector)
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    print(f"\naxe {what}: " + ", ".join(f"{v['impact']} {v['id']}" for v in result["violations"]))
    return [v["id"] for v in bad]


def slot_after(page: Page, after: datetime, not_start: str = "") -> Any:
    """The first offered slot starting after ``after`` (paging days, then months)."""
    for _ in range(3):
        for date in page.locator(".cb-day").evaluate_all("els => els.map(e => e.dataset.date)"):
            page.locator(f".cb-day[data-date='{date}']").click()
            for slot in page.locator(".cb-slot").all():
                start = slot.get_attribute("data-start") or ""
                if start != not_start and instant(start) > after:
                    return slot
        page.get_by_role("button", name="Next month").click()
        ready(page)
    raise AssertionError(f"no slot after {after}")


def manage_link(server: DemoServer, email: str) -> tuple[str, str]:
    """The booking id and token of the manage link in the customer's confirmation."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in server.mails():
            mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if email not in str(mail["To"]):
                continue
            for part in mail.walk():
                if part.get_content_maintype() == "text":
                    found = LINK.search(unescape(part.get_content()))
                    if found:
                        return found.group(1), found.group(2)
        time.sleep(0.3)
    raise AssertionError(f"no manage link mailed to {email}: {server.mails()}")


def book(server: DemoServer, page: Page) -> str:
    """Book Anna's first time more than a day and a half ahead (the default policy closes
    changes a day before the start); the slot's start."""
    page.goto(f"{server.base}/demo/store/apps/consult/book?service={server.services[INTRO]}")
    ready(page)
    page.get_by_label("Expert").select_option(label="Anna Berger")
    ready(page)
    slot = slot_after(page, datetime.now(UTC) + timedelta(hours=36))
    start = slot.get_attribute("data-start") or ""
    slot.click()
    expect(page.get_by_role("heading", name="This time is held for you")).to_be_focused()
    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url("**/demo/store/cart")
    page.get_by_label("First name").fill("Lee")
    page.get_by_label("Last name").fill("Park")
    page.get_by_label("Email").fill("lee@example.com")
    page.get_by_role("button", name=re.compile("^Pay")).click()
    expect(page.locator(".webhook")).to_have_attribute("data-webhook-status", "200")
    return start


def test_customer_in_another_zone_reschedules_then_cancels_from_the_mail(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    page = new_page(browser, "America/Los_Angeles")
    start = book(demo_server, page)
    [booking] = bookings(demo_server)
    assert booking["start"] == start and booking["status"] == "confirmed"

    booking_id, token = manage_link(demo_server, "lee@example.com")
    assert booking_id == booking["id"]
    page.goto(f"{demo_server.base}/demo/store/apps/consult/manage?"
              f"booking={booking_id}&token={token}")
    root = page.locator("[data-consultbook-manage]")
    expect(root).to_have_class(re.compile("cb-ready"))

    # Both times: the customer's zone (the hold's) and the shop's.
    when = instant(start)
    mine = page.locator("[data-fact=your-time]")
    expect(mine.locator("dt")).to_have_text("Your time (America/Los_Angeles)")
    expect(mine.locator("dd")).to_contain_text(when.astimezone(LOS_ANGELES).strftime("%H:%M"))
    shop = page.locator("[data-fact=shop-time]")
    expect(shop.locator("dt")).to_have_text("Shop time (Europe/Berlin)")
    expect(shop.locator("dd")).to_contain_text(when.astimezone(BERLIN).strftime("%H:%M"))
    expect(page.locator("[data-fact=expert] dd")).to_have_text("Anna Berger")
    expect(page.locator("[data-fact=status] dd")).to_have_text("Confirmed")
    # What the policy allows, until when (a day before the start, by default).
    expect(page.locator("[data-policy=reschedule]")).to_contain_text(
        "You can change the time until")
    expect(page.locator("[data-policy=cancel]")).to_contain_text("You can cancel until")
    until = (when - timedelta(days=1)).astimezone(LOS_ANGELES).strftime("%H:%M")
    expect(page.locator("[data-policy=cancel]")).to_contain_text(until)
    assert axe_on(page, axe_js, "[data-consultbook-manage]", "manage page") == []

    # Reschedule: the booking calendar, Anna kept, another time chosen, then confirmed.
    page.get_by_role("button", name="Change the time").click()
    calendar = page.locator(".cb-reschedule [data-consultbook-booking]")
    expect(calendar).to_have_class(re.compile("cb-ready"))
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    expect(calendar.get_by_label("Expert")).to_have_value(demo_server.experts["Anna Berger"])
    slot = slot_after(page, datetime.now(UTC) + timedelta(hours=36), not_start=start)
    new_start = slot.get_attribute("data-start") or ""
    slot.click()
    move = page.get_by_role("button", name=re.compile("^Move my booking to"))
    expect(move).to_be_focused()
    assert axe_on(page, axe_js, "[data-consultbook-manage]", "reschedule") == []
    with page.expect_request(lambda r: r.url.endswith("/reschedule")) as asked:
        move.click()
    assert json.loads(asked.value.post_data or "{}") == {"token": token, "start": new_start}
    expect(page.get_by_role("status").first).to_contain_text("Your booking now starts")
    expect(mine.locator("dd")).to_contain_text(
        instant(new_start).astimezone(LOS_ANGELES).strftime("%H:%M"))
    [moved] = bookings(demo_server)
    assert moved["id"] == booking_id and moved["start"] == new_start
    assert moved["status"] == "confirmed"

    # Cancel: a modal dialog, the safe choice focused; Escape keeps the booking.
    cancel = page.get_by_role("button", name="Cancel booking")
    cancel.click()
    dialog = page.get_by_role("dialog", name="Cancel this booking?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Keep my booking")).to_be_focused()
    assert axe_on(page, axe_js, "dialog", "cancel dialog") == []
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(cancel).to_be_focused()
    assert bookings(demo_server)[0]["status"] == "confirmed"
    cancel.click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page.get_by_role("status").first).to_have_text(
        "Your booking is cancelled. We have sent you an email.")
    expect(page.locator("[data-fact=status] dd")).to_have_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel booking")).to_have_count(0)
    [cancelled] = bookings(demo_server)
    assert cancelled["id"] == booking_id and cancelled["status"] == "cancelled"
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_wrong_link_and_the_policys_refusals_are_said(demo_server: DemoServer,
                                                       browser: Any) -> None:
    page = new_page(browser, "Europe/Berlin")
    page.goto(f"{demo_server.base}/demo/store/apps/consult/manage?booking=nope&token=nope")
    expect(page.get_by_role("alert")).to_have_text(
        "This link does not lead to a booking. It may be mistyped or no longer valid.")

    # A booking whose policy closes as the customer acts (the answers faked here).
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    doc = {"id": "b1", "service": demo_server.services[INTRO], "service_title": INTRO,
           "expert": demo_server.experts["Anna Berger"], "expert_name": "Anna Berger",
           "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
           "end": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "local": start.astimezone(BERLIN).isoformat(), "timezone": "Europe/Berlin",
           "shop_timezone": "Europe/Berlin", "status": "confirmed", "seats": 1,
           "can_cancel": True, "can_reschedule": True,
           "cancel_until": (start - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "reschedule_until": (start - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}

    def api(route: Route) -> None:
        url = route.request.url
        if url.endswith("/cancel"):
            route.fulfill(status=403, content_type="application/json", body=json.dumps(
                {"error": {"code": "policy_closed", "message": "closed"}}))
        else:
            route.fulfill(status=200, content_type="application/json",
                          body=json.dumps({"booking": doc}))

    page.route("**/apps/consult/bookings/b1**", api)
    page.goto(f"{demo_server.base}/demo/store/apps/consult/manage?booking=b1&token=t")
    expect(page.locator("[data-fact=shop-time]")).to_have_count(0)  # one zone: shown once
    page.get_by_role("button", name="Cancel booking").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The shop's policy no longer allows this change online. Please contact the shop.")
    expect(page.locator("[data-fact=status] dd")).to_have_text("Confirmed")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_the_manage_page_speaks_the_shops_language(demo_server: DemoServer,
                                                   browser: Any) -> None:
    page = new_page(browser, "Europe/Berlin", locale="de-DE")
    page.goto(f"{demo_server.base}/demo/store/apps/consult/manage?booking=x&token=y&locale=de")
    expect(page.get_by_role("heading", name="Ihre Buchung")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Dieser Link führt zu keiner Buchung")
    page.goto(f"{demo_server.base}/demo/store/apps/consult/my-bookings/page?locale=ar")
    expect(page.locator("[data-consultbook-my-bookings]")).to_have_attribute("dir", "rtl")
    # The demo's visitor is not logged in: asked to log in, politely.
    expect(page.locator(".cb-login")).to_contain_text("سجّل الدخول لرؤية حجوزاتك.")
    assert page.js_errors == []  # type: ignore[attr-defined]
