"""The admin's bookings calendar in a real browser (the demo; issue 13): the month and
week views with the expert, service and status filters and the customer search, a
booking rescheduled from the calendar (it moves, the customer is mailed), a past booking
marked a no-show, the in-page dialog that replaced the browser's confirm box for a
delete, and the first-run checklist on Home. axe-core checks each new state; the steps
are in tests/browser/admin_calendar_steps.py for other journeys to reuse.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.parser import BytesParser
from typing import Any

from playwright.sync_api import Dialog, Page, Route, expect

from tests.browser.admin_calendar_steps import (
    admin_app,
    booking_in_calendar,
    calendar,
    choose_view,
    go_to_day,
    mark_no_show,
    open_booking,
    open_bookings_calendar,
    reschedule_from_calendar,
    set_filters,
    wait_loaded,
)
from tests.browser.conftest import DemoServer
from tests.browser.test_admin_capacity import all_bookings, far_from, instant, local_parts
from tests.browser.test_admin_home import SHIFTS
from tests.browser.test_admin_plugin_forms import axe_connections as axe_main
from tests.browser.test_admin_providers_browser import BERLIN, DEEP, admin_api, book, monday
from tests.browser.test_demo_browser import new_page
from tests.browser.test_storefront_calendar import axe_js  # noqa: F401 (a fixture)


def no_serious(problems: dict[str, list[dict[str, Any]]]) -> None:
    assert {k: [v["id"] for v in bad] for k, bad in problems.items() if bad} == {}


def open_admin_home(server: DemoServer, browser: Any) -> Page:
    page = new_page(browser, "Europe/Berlin")
    natives: list[str] = []

    def native(dialog: Dialog) -> None:
        natives.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", native)
    page.native_dialogs = natives  # type: ignore[attr-defined]
    page.goto(f"{server.base}/demo/admin")
    expect(admin_app(page).get_by_role("heading", name="Home", level=2)).to_be_visible()
    return page


def slots_of(server: DemoServer, start: date, days: int = 21) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = server.proxy("GET", "availability", {
        "service": server.services[DEEP], "start": start.isoformat(), "days": str(days)}
    ).json()["slots"]
    return found


def local_date(slot: dict[str, Any]) -> date:
    return datetime.fromisoformat(slot["local"]).date()


def expert_name(server: DemoServer, expert_id: str) -> str:
    return next(name for name, i in server.experts.items() if i == expert_id)


def test_month_and_week_views_with_filters_and_search(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    today = datetime.now(BERLIN).date()
    slots = slots_of(demo_server, today)
    first = slots[0]
    day = local_date(first)
    week = monday(day)
    same_week = [s for s in slots if monday(local_date(s)) == week]
    walt = next(s for s in same_week if s["expert"] == first["expert"] and far_from(s, first))
    pia = next(s for s in same_week if s["expert"] != first["expert"])
    book(demo_server, first, 9401, paid=True, name="Mona Month")
    book(demo_server, walt, 9402, paid=True, name="Walt Week")
    book(demo_server, pia, 9403, paid=False, name="Pia Pending")
    other_expert = expert_name(demo_server, pia["expert"])

    page = open_admin_home(demo_server, browser)
    app = open_bookings_calendar(page, "month")
    problems: dict[str, list[dict[str, Any]]] = {}
    go_to_day(page, day.isoformat())
    holder = calendar(page)
    cell = holder.locator(f'.month-day[data-date="{day.isoformat()}"]')
    on_day = sum(1 for s in (first, walt, pia) if local_date(s) == day)
    expect(cell).to_have_attribute("aria-label", re.compile(
        rf", {on_day} bookings?(, today)?$"))
    # Six rows whatever the month: the grid never changes its size.
    expect(holder.locator("table.month tbody tr")).to_have_count(6)
    expect(app.locator("#bookings-summary")).to_contain_text("3 bookings in ")
    problems["month"] = axe_main(page, axe_js, "month view")

    # One tab stop in the grid; the arrow keys move between days.
    expect(holder.locator(".month-day[tabindex='0']")).to_have_count(1)
    cell.click()
    expect(cell).to_have_attribute("aria-pressed", "true")
    day_list = app.locator(".day-list")
    expect(day_list.get_by_role("heading")).to_contain_text("Bookings on")
    expect(day_list.locator(".chip-button", has_text="Mona Month")).to_be_visible()
    cell.focus()
    page.keyboard.press("ArrowRight")
    moved = (day + timedelta(days=1))
    if moved.month == day.month:
        expect(holder.locator(f'.month-day[data-date="{moved.isoformat()}"]')).to_be_focused()
    problems["month, a day chosen"] = axe_main(page, axe_js, "month, a day chosen")
    # Page Down: the next month, the focus still in the grid.
    page.keyboard.press("PageDown")
    nxt = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    expect(holder).to_have_attribute("data-first", nxt.isoformat())
    expect(holder.locator(".month-day[tabindex='0']")).to_be_focused()
    page.keyboard.press("PageUp")
    expect(holder).to_have_attribute("data-first", day.replace(day=1).isoformat())
    wait_loaded(page)

    # The status filter: only the pending booking is left in the month.
    set_filters(page, status="Pending")
    expect(app.locator("#bookings-summary")).to_have_text(re.compile(
        r"^1 booking matches the filters in "))
    # The customer search (debounced), with the filters it narrows to nobody ...
    set_filters(page, search="walt")
    expect(app.locator("#bookings-summary")).to_have_text(re.compile(
        r"^No bookings match the filters in "))
    # ... and alone, to Walt; the search box keeps the focus while the list reloads.
    set_filters(page, status="Any status")
    expect(app.locator("#bookings-summary")).to_have_text(re.compile(
        r"^1 booking matches the filters in "))
    problems["month, filtered"] = axe_main(page, axe_js, "month, filtered")

    # The week view keeps the filters; the chosen week is the one of the chosen day.
    choose_view(page, "week")
    go_to_day(page, walt["local"][:10])
    expect(booking_in_calendar(page, "Walt Week")).to_have_count(1)
    expect(booking_in_calendar(page, "Mona Month")).to_have_count(0)
    set_filters(page, search="")
    expect(booking_in_calendar(page, "Mona Month")).to_have_count(1)
    set_filters(page, expert=other_expert)
    expect(booking_in_calendar(page, "Pia Pending")).to_have_count(1)
    expect(booking_in_calendar(page, "Walt Week")).to_have_count(0)
    expect(app.get_by_role("row", name=re.compile("Pia Pending"))).to_be_visible()
    problems["week, filtered"] = axe_main(page, axe_js, "week, filtered")
    set_filters(page, expert="All experts", service=DEEP)
    expect(calendar(page).locator(".chip-button")).to_have_count(3)

    # Nothing in the admin frame moved on its own while the lists came in.
    frame = next(f for f in page.frames if f != page.main_frame and "/admin" in f.url)
    assert frame.evaluate(SHIFTS) < 0.1
    # The details of a booking, from the calendar, with its delivery state.
    details = open_booking(page, "Mona Month")
    expect(details).to_contain_text("Calendar event and mails")
    expect(details.locator("#details-delivery")).not_to_be_empty()
    expect(details.get_by_role("button", name="Mark no-show")).to_have_count(0)  # not over
    problems["details"] = axe_main(page, axe_js, "booking details")
    page.keyboard.press("Escape")
    expect(details).to_have_count(0)
    expect(booking_in_calendar(page, "Mona Month")).to_be_focused()
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]
    assert page.native_dialogs == []  # type: ignore[attr-defined]


def rescheduled_mail(server: DemoServer, email: str, timeout: float = 30) -> str:
    """The subject of the "rescheduled" mail to ``email``, once the worker sent it."""
    deadline = time.monotonic() + timeout
    while True:
        for path in server.mails():
            message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            if email in str(message["To"]) and "eschedul" in str(message["Subject"]):
                return str(message["Subject"])
        if time.monotonic() > deadline:
            raise AssertionError(f"no rescheduled mail to {email} in {server.outbox}")
        time.sleep(0.3)


def test_a_booking_is_rescheduled_from_the_calendar(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    today = datetime.now(BERLIN).date()
    slots = slots_of(demo_server, today)
    first = slots[0]
    week = monday(local_date(first))
    mine = [s for s in slots if s["expert"] == first["expert"]
            and monday(local_date(s)) == week]
    target = next(s for s in mine if far_from(s, first) and local_date(s) != local_date(first))
    book(demo_server, first, 9501, paid=True, name="Rita Resched")
    page = open_admin_home(demo_server, browser)
    open_bookings_calendar(page)
    old_day, _ = local_parts(first["start"])
    new_day, new_hm = local_parts(target["start"])
    go_to_day(page, old_day)
    details = open_booking(page, "Rita Resched")
    problems = {"details, live": axe_main(page, axe_js, "details of a live booking")}
    page.keyboard.press("Escape")
    expect(details).to_have_count(0)

    reschedule_from_calendar(page, "Rita Resched", new_day, new_hm, day_iso=old_day)
    rita = all_bookings(demo_server)["9501"]
    assert (instant(rita["start"]), rita["status"]) == (instant(target["start"]), "confirmed")
    # The calendar shows it once, on its new day, and the focus is on it.
    chip = booking_in_calendar(page, "Rita Resched")
    expect(chip).to_have_count(1)
    expect(chip).to_be_focused()
    column = admin_app(page).locator(".week-day").nth(date.fromisoformat(new_day).weekday())
    expect(column.locator(".chip-button", has_text="Rita Resched")).to_contain_text(new_hm)
    assert "Rita" not in admin_app(page).locator(".week-day").nth(
        date.fromisoformat(old_day).weekday()).inner_text()
    # The customer is mailed the new time.
    assert rescheduled_mail(demo_server, "rita@example.com")
    problems["after reschedule"] = axe_main(page, axe_js, "week after reschedule")
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]


def move_into_the_past(server: DemoServer, booking_id: str, start: datetime) -> None:
    """Test setup: the booking took place at ``start`` (UTC). A storefront cannot book a
    past time, so the booking's times (and its claimed range with them) are moved in the
    demo's database."""
    stamp = "%Y-%m-%d %H:%M:%S.%f"
    db = sqlite3.connect(server.outbox.parent / "demo.db", timeout=10)
    try:
        with db:
            row = db.execute("SELECT start_at, end_at, claim_start, claim_end FROM claims "
                             "WHERE id = ?", (booking_id,)).fetchone()
            was = [datetime.strptime(v, stamp) for v in row]
            shift = start.replace(tzinfo=None) - was[0]
            db.execute("UPDATE claims SET start_at = ?, end_at = ?, claim_start = ?, "
                       "claim_end = ? WHERE id = ?",
                       (*[(v + shift).strftime(stamp) for v in was], booking_id))
    finally:
        db.close()


def test_a_past_booking_is_marked_a_no_show(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    today = datetime.now(BERLIN).date()
    slots = slots_of(demo_server, today)
    book(demo_server, slots[0], 9601, paid=True, name="Nora Noshow")
    booking = all_bookings(demo_server)["9601"]["id"]
    yesterday = datetime.combine(today - timedelta(days=1), datetime.min.time(), BERLIN
                                 ).replace(hour=10)
    move_into_the_past(demo_server, booking, yesterday.astimezone(UTC))
    page = open_admin_home(demo_server, browser)
    open_bookings_calendar(page)
    go_to_day(page, yesterday.date().isoformat())
    dialog = mark_no_show(page, "Nora Noshow")
    problems = {"no-show marked": axe_main(page, axe_js, "details, no-show marked")}
    marked = admin_api(demo_server, "GET", f"/bookings/{booking}")
    assert (marked["status"], marked["no_show"]) == ("confirmed", True)
    expect(admin_app(page).locator("#status")).to_have_text("Marked as a no-show.")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_have_count(0)
    wait_loaded(page)
    expect(booking_in_calendar(page, "Nora Noshow")).to_contain_text("(no-show)")
    row = admin_app(page).get_by_role("row", name=re.compile("Nora Noshow"))
    expect(row).to_contain_text("no-show")

    # The status filter finds it; the row's button takes the mark off again.
    set_filters(page, status="No-show")
    expect(booking_in_calendar(page, "Nora Noshow")).to_have_count(1)
    problems["no-show filter"] = axe_main(page, axe_js, "week, no-show filter")
    row.get_by_role("button", name=re.compile("^Remove the no-show mark")).click()
    expect(admin_app(page).locator("#status")).to_have_text("No-show mark removed.")
    wait_loaded(page)
    expect(booking_in_calendar(page, "Nora Noshow")).to_have_count(0)
    assert admin_api(demo_server, "GET", f"/bookings/{booking}")["no_show"] is False
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_delete_is_confirmed_in_an_in_page_dialog(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    page = open_admin_home(demo_server, browser)
    app = admin_app(page)
    app.get_by_role("link", name="Services", exact=True).click()
    title = "Intro call (30 min)"
    opener = app.get_by_role("button", name=f"Delete {title}")
    opener.click()
    dialog = app.get_by_role("dialog", name=f"Delete {title}?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Existing bookings keep it.")
    cancel = dialog.get_by_role("button", name="Cancel")
    confirm = dialog.get_by_role("button", name="Delete service")
    expect(cancel).to_be_focused()
    expect(confirm).to_have_class(re.compile("critical"))
    problems = {"confirm dialog": axe_main(page, axe_js, "delete confirmation")}
    # The focus stays inside: Tab goes round the dialog's two buttons.
    page.keyboard.press("Tab")
    expect(confirm).to_be_focused()
    page.keyboard.press("Tab")
    expect(cancel).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(confirm).to_be_focused()
    # Escape keeps the service and gives the focus back.
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(opener).to_be_focused()
    cancel_again = app.get_by_role("dialog", name=f"Delete {title}?")
    opener.click()
    cancel_again.get_by_role("button", name="Cancel").click()
    expect(cancel_again).to_have_count(0)
    assert any(s["title"] == title for s in admin_api(demo_server, "GET", "/services")["services"])

    opener.click()
    app.get_by_role("dialog", name=f"Delete {title}?").get_by_role(
        "button", name="Delete service").click()
    expect(app.locator("#status")).to_have_text("Service deleted.")
    expect(app.get_by_role("button", name=f"Delete {title}")).to_have_count(0)
    expect(app.get_by_role("heading", name="Services", level=2)).to_be_focused()
    assert all(s["title"] != title for s in admin_api(demo_server, "GET", "/services")["services"])

    # An expert's delete asks the same way.
    app.get_by_role("link", name="Experts", exact=True).click()
    app.get_by_role("button", name="Delete Maya Thompson").click()
    expert_dialog = app.get_by_role("dialog", name="Delete Maya Thompson?")
    expect(expert_dialog.get_by_role("button", name="Delete expert")).to_be_visible()
    expert_dialog.get_by_role("button", name="Cancel").click()
    expect(app.get_by_role("button", name="Delete Maya Thompson")).to_be_focused()
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]
    assert page.native_dialogs == []  # type: ignore[attr-defined]


CHECKLIST: dict[str, Any] = {"checklist": {"steps": [
    {"id": "service", "done": True, "title": "Add a service", "detail": "3 services.",
     "section": "services", "url": None},
    {"id": "expert", "done": True, "title": "Add an expert", "detail": None,
     "section": "experts", "url": None},
    {"id": "hours", "done": False, "title": "Set working hours",
     "detail": "No expert has weekly hours yet.", "section": "hours", "url": None},
    {"id": "product", "done": True, "title": "Link a product", "detail": None,
     "section": "services", "url": None},
    {"id": "theme_block", "done": None, "title": "Add the booking block to your theme",
     "detail": "Could not ask Shopify.", "section": None,
     "url": "https://consultbook-demo.myshopify.com/admin/themes/current/editor"},
], "done": 3, "total": 5}}


def test_the_first_run_checklist_on_home(demo_server: DemoServer, browser: Any,
                                         axe_js: str) -> None:  # noqa: F811
    page = new_page(browser, "Europe/Berlin")
    answer: dict[str, Any] = {"status": 200, "body": CHECKLIST}

    def checklist(route: Route) -> None:
        route.fulfill(status=answer["status"], content_type="application/json",
                      body=json.dumps(answer["body"]))

    page.context.route(re.compile(r".*/admin/api/checklist$"), checklist)
    page.goto(f"{demo_server.base}/demo/admin")
    app = admin_app(page)
    card = app.locator("section.checklist")
    expect(card).to_be_visible()
    expect(card.get_by_role("heading")).to_have_text("Set up consultbook")
    expect(card).to_contain_text("3 of 5 steps done")
    hours = card.locator("li[data-step='hours']")
    expect(hours).to_contain_text("To do")
    expect(hours).to_contain_text("No expert has weekly hours yet.")
    expect(card.locator("li[data-step='theme_block']")).to_contain_text("Not checked")
    theme = card.get_by_role("link", name=re.compile("^Add the booking block"))
    expect(theme).to_have_attribute("href", CHECKLIST["checklist"]["steps"][4]["url"])
    expect(theme).to_have_attribute("target", "_blank")
    # It is first on the page, above the numbers.
    first_card = app.locator("main > :is(div, section)").first
    expect(first_card).to_have_attribute("id", "home-checklist")
    problems = {"checklist": axe_main(page, axe_js, "home with checklist")}
    card.get_by_role("link", name="Set working hours").click()
    expect(app.get_by_role("heading", name="Working hours", level=2)).to_be_visible()

    # All that can be checked is done: no card.
    answer["body"] = json.loads(json.dumps(CHECKLIST))
    for step in answer["body"]["checklist"]["steps"]:
        step["done"] = True if step["done"] is not None else None
    app.get_by_role("link", name="Home", exact=True).click()
    expect(app.locator("#home-range")).to_contain_text("Showing")
    expect(app.locator("section.checklist")).to_have_count(0)

    # A server without the endpoint: nothing, and no error said.
    answer.update(status=404, body={"error": {"code": "not_found", "message": "Not Found"}})
    page.reload()
    expect(app.locator("#home-range")).to_contain_text("Showing")
    expect(app.locator("section.checklist")).to_have_count(0)
    expect(app.locator("#alert")).to_be_empty()
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]
