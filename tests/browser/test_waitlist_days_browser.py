"""The storefront's waiting list across time zones, and its refusals, in Chromium.

The calendar shows the customer's days; the waiting list counts in the shop's dates. A
customer west of the shop in their evening (New York at 19:00 while Berlin is at 01:00
of the next day) who picks their own today must be put on a shop date still to come --
the one holding what is left of their day -- not on the shop's date of their noon, which
has passed there (the server refuses it). A refusal that is not about the email address
(a date beyond the service's horizon) is said in the server's words as a general
warning, never as "invalid email"; one about the address lands on the email field. The
same rule for the hold's questions: a refusal of the answers that names none of the
asked questions is said as is, not put on the first question.

The demo server runs on the real clock, so the test picks the zones: the shop stays in
DEMO_TZ when, right now, some customer zone is still on the day before Berlin's date with
its noon already past there; at other hours (that happens only in the shop's morning) the
shop is moved, through the admin settings as a merchant would, to a zone where it is
morning now.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Page, expect

from engine.demo import DEMO_TZ
from tests.browser.conftest import DemoServer
from tests.browser.test_storefront_calendar import new_page, ready
from tests.browser.test_storefront_capacity import admin, posted, workshop

# One zone per UTC offset from -11 to +14; the shop tries DEMO_TZ first, the customer
# New York first.
ZONES = ["America/New_York", DEMO_TZ, "Pacific/Pago_Pago", "Pacific/Honolulu",
         "America/Anchorage", "America/Los_Angeles", "America/Denver", "America/Chicago",
         "America/Sao_Paulo", "Atlantic/South_Georgia", "Atlantic/Cape_Verde", "UTC",
         "Europe/Helsinki", "Europe/Moscow", "Asia/Dubai", "Asia/Karachi", "Asia/Dhaka",
         "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Brisbane",
         "Pacific/Noumea", "Pacific/Tarawa", "Pacific/Tongatapu", "Pacific/Kiritimati"]
# How long the chosen zones must keep their relation (the test takes well under this).
MARGIN = timedelta(minutes=20)


def dates_at(shop: str, customer: str, now: datetime) -> tuple[date, date, date]:
    """(the customer's today, the shop's today, the shop's date at the customer's noon)."""
    mine = now.astimezone(ZoneInfo(customer)).date()
    noon = datetime.combine(mine, time(12), ZoneInfo(customer)).astimezone(ZoneInfo(shop))
    return mine, now.astimezone(ZoneInfo(shop)).date(), noon.date()


def evening_west_of_the_shop(now: datetime) -> tuple[str, str]:
    """(shop zone, customer zone) such that from now to now + MARGIN the customer's today
    goes on while the shop is already on the next date, and the shop's date at the
    customer's noon has passed there."""
    def fits(shop: str, customer: str, at: datetime) -> bool:
        mine, shops, at_noon = dates_at(shop, customer, at)
        return shops == mine + timedelta(days=1) and at_noon < shops

    for shop in [DEMO_TZ, *ZONES]:
        for customer in ZONES:
            if fits(shop, customer, now) and fits(shop, customer, now + MARGIN):
                return shop, customer
    raise AssertionError(f"no zones fit at {now}")  # ZONES cover every hour of the day


def no_times_today(server: DemoServer, **fields: Any) -> str:
    """A service both demo experts offer that has no time left today in any zone (a day's
    notice), so the customer's today offers the waiting list."""
    service = workshop(server, seats=1, questions=[])
    r = admin(server, "PATCH", f"services/{service}",
              json={"min_notice_minutes": 24 * 60, **fields})
    assert r.status_code == 200, r.text
    return service


def open_calendar(server: DemoServer, browser: Any, service: str, tz: str) -> Page:
    page = new_page(browser, tz)
    page.goto(f"{server.base}/demo/store/apps/consult/book?service={service}")
    ready(page)
    return page


def show_month_of(page: Page, day: str) -> None:
    """Page back or on until the grid's month is ``day``'s (a first visit skips ahead
    over months without times)."""
    for _ in range(3):
        month = page.locator(".cb-cell:not(.cb-outside)").first.get_attribute("data-date")
        assert month is not None
        if month[:7] == day[:7]:
            return
        page.get_by_role("button", name="Previous month" if month[:7] > day[:7]
                         else "Next month").click()
        ready(page)
    raise AssertionError(f"the calendar does not show the month of {day}")


def ask_to_wait(page: Page, day: str, email: str) -> Any:
    """Choose ``day`` (a day without times), ask for the waiting list; the response."""
    cell = page.locator(f".cb-cell[data-date='{day}']:not(.cb-outside)")
    expect(cell).not_to_have_attribute("aria-disabled", "true")
    cell.click()
    expect(page.locator(".cb-slots .cb-empty")).to_have_text("No free times on this day.")
    page.get_by_role("button", name="Tell me when a time frees up").click()
    page.get_by_label("Your email").fill(email)
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/waitlist")) as answer:
        page.get_by_role("button", name="Notify me").click()
    return answer.value


def test_the_customers_evening_waits_on_the_shops_next_date(demo_server: DemoServer,
                                                            browser: Any) -> None:
    shop_tz, customer_tz = evening_west_of_the_shop(datetime.now(UTC))
    if shop_tz != DEMO_TZ:
        r = admin(demo_server, "PATCH", "settings", json={"timezone": shop_tz})
        assert r.status_code == 200, r.text
    service = no_times_today(demo_server)
    page = open_calendar(demo_server, browser, service, customer_tz)
    mine, shops, at_noon = dates_at(shop_tz, customer_tz, datetime.now(UTC))
    assert at_noon < shops  # the old mapping's date: refused by the server as past
    today = mine.isoformat()
    expect(page.locator("[data-shop-tz]")).to_have_text(shop_tz)
    show_month_of(page, today)
    expect(page.locator(f".cb-cell[data-date='{today}']:not(.cb-outside)")).to_have_attribute(
        "aria-current", "date")  # the calendar's today is the customer's

    answer = ask_to_wait(page, today, "evening@example.com")
    # The shop's date holding the rest of the customer's day: the shop's today.
    assert posted(answer.request)["date"] == shops.isoformat(), (shop_tz, customer_tz)
    assert answer.status == 201, answer.text()
    expect(page.locator(".cb-wait .cb-done")).to_contain_text("Thank you.")
    expect(page.locator(".cb-alert")).to_have_text("")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_date_the_server_refuses_is_no_email_error(demo_server: DemoServer,
                                                     browser: Any) -> None:
    # A day's notice and one day of horizon: no time is ever offered, and every day
    # from the day after tomorrow (shop's dates) is beyond the horizon.
    service = no_times_today(demo_server, max_days_ahead=1)
    page = open_calendar(demo_server, browser, service, DEMO_TZ)
    first = (datetime.now(ZoneInfo(DEMO_TZ)).date() + timedelta(days=3)).isoformat()
    off = page.locator(".cb-grid button.cb-off:not(.cb-outside):not([aria-disabled='true'])")
    days = [d for d in off.evaluate_all("els => els.map(e => e.dataset.date)") if d >= first]
    if not days:
        page.get_by_role("button", name="Next month").click()
        ready(page)
        days = off.evaluate_all("els => els.map(e => e.dataset.date)")
    day = days[0]

    answer = ask_to_wait(page, day, "later@example.com")
    assert answer.status == 400, answer.text()
    message = answer.json()["error"]["message"]
    assert "horizon" in message
    email = page.get_by_label("Your email")
    expect(page.get_by_role("alert")).to_have_text(message)  # the server's words
    expect(email).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#{email.get_attribute('aria-describedby')}")).to_have_text("")
    expect(page.get_by_text("Please enter a valid email address.")).to_have_count(0)

    # An address the browser's check lets through and the server refuses: on the field.
    email.fill("later@exa_mple.com")
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/waitlist")) as again:
        page.get_by_role("button", name="Notify me").click()
    assert again.value.status == 400
    assert again.value.json()["error"]["message"].startswith("email ")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_be_focused()
    expect(page.locator(f"#{email.get_attribute('aria-describedby')}")).to_have_text(
        "Please enter a valid email address.")
    expect(page.locator(".cb-alert")).to_have_text("")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_refused_answers_that_name_no_question_are_said_as_is(demo_server: DemoServer,
                                                               browser: Any) -> None:
    questions = [{"id": "contact", "label": "Contact email", "type": "email",
                  "required": False},
                 {"id": "topic", "label": "Topic", "type": "text", "required": True}]
    service = workshop(demo_server, seats=1, questions=questions)
    page = open_calendar(demo_server, browser, service, DEMO_TZ)
    said = "the service asks no question 'budget'"  # the merchant changed the questions
    page.route("**/holds", lambda route: route.fulfill(
        status=422, content_type="application/json",
        body=json.dumps({"error": {"code": "invalid_answers", "message": said}})))
    page.locator(".cb-day").first.click()
    page.locator(".cb-slot").first.click()
    contact = page.get_by_label("Contact email")
    contact.fill("me@example.com")
    page.get_by_label(re.compile("^Topic")).fill("Rye")
    page.get_by_role("button", name="Hold this time").click()
    expect(page.get_by_role("alert")).to_have_text(said)
    expect(contact).not_to_have_attribute("aria-invalid", "true")  # not the first question's
    expect(page.get_by_text("Please enter a valid email address.")).to_have_count(0)
    expect(page.locator(".cb-ask")).to_be_visible()  # the answers are kept
    expect(contact).to_have_value("me@example.com")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_the_manage_pages_refusals_go_by_their_code(demo_server: DemoServer,
                                                    browser: Any) -> None:
    # A 409 that is not about a time being taken (the booking was cancelled meanwhile):
    # the server's words, not "that time was just taken" (the answers faked here).
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    at = "%Y-%m-%dT%H:%M:%SZ"
    doc = {"id": "b1", "service": demo_server.services["Intro call (30 min)"],
           "service_title": "Intro call (30 min)",
           "expert": demo_server.experts["Anna Berger"], "expert_name": "Anna Berger",
           "start": start.strftime(at), "end": (start + timedelta(minutes=30)).strftime(at),
           "local": start.astimezone(ZoneInfo(DEMO_TZ)).isoformat(), "timezone": DEMO_TZ,
           "shop_timezone": DEMO_TZ, "status": "confirmed", "seats": 1,
           "can_cancel": True, "can_reschedule": True,
           "cancel_until": (start - timedelta(days=1)).strftime(at),
           "reschedule_until": (start - timedelta(days=1)).strftime(at)}
    said = "a cancelled or lapsed booking cannot be changed"

    def api(route: Any) -> None:
        if route.request.url.endswith("/cancel"):
            route.fulfill(status=409, content_type="application/json", body=json.dumps(
                {"error": {"code": "booking_not_live", "message": said}}))
        else:
            route.fulfill(status=200, content_type="application/json",
                          body=json.dumps({"booking": doc}))

    page = new_page(browser, DEMO_TZ)
    page.route("**/apps/consult/bookings/b1**", api)
    page.goto(f"{demo_server.base}/demo/store/apps/consult/manage?booking=b1&token=t")
    page.get_by_role("button", name="Cancel booking").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page.get_by_role("alert")).to_have_text(said)
    assert page.js_errors == []  # type: ignore[attr-defined]
