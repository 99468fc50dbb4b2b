"""The admin page for issues 11 and 12 in a real browser: a seated, limited service with
intake questions made through the form (the server's errors shown next to the field
they name), an expert's limits and assignment fields, the customer policy in the
settings, and a booking rescheduled from the bookings list through an accessible
dialog that says a taken time inside itself. axe-core checks each new state.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import requests
from playwright.sync_api import FrameLocator, expect

from engine.config import DEMO_API_SECRET
from engine.demo import DEMO_PRODUCTS, DEMO_SHOP
from engine.shopify import webhook_hmac
from tests.browser.conftest import DemoServer
from tests.browser.test_admin_plugin_forms import axe_connections as axe_main
from tests.browser.test_admin_providers_browser import (
    BERLIN,
    DEEP,
    admin_api,
    book,
    monday,
    open_admin,
)
from tests.browser.test_storefront_calendar import axe_js  # noqa: F401 (a fixture)
from tests.conftest import order_payload


def described_by(app: FrameLocator, field: Any) -> str:
    """The text of the elements an input's aria-describedby names, joined."""
    ids = (field.get_attribute("aria-describedby") or "").split()
    return " ".join(app.locator(f"[id='{i}']").inner_text() for i in ids)


def no_serious(problems: dict[str, list[dict[str, Any]]]) -> None:
    assert {k: [v["id"] for v in bad] for k, bad in problems.items() if bad} == {}


def test_a_seated_limited_service_with_questions_is_made_in_the_form(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    page, app = open_admin(demo_server, browser)
    problems: dict[str, list[dict[str, Any]]] = {}
    form = app.locator("#service-form form")
    form.get_by_label("Title").fill("Workshop for six")
    form.get_by_label("Duration (minutes)").fill("90")
    form.get_by_label("Seats per session").fill("6")
    form.get_by_label("Per day").fill("2")
    form.get_by_label("Per calendar month").fill("10")
    form.get_by_label("By priority").check()
    expect(form.get_by_label("By priority")).to_have_attribute(
        "aria-describedby", re.compile(".+"))

    # Two questions: the id follows the label until it is edited.
    form.get_by_role("button", name="Add a question").click()
    first = form.get_by_label("Question 1 label")
    expect(first).to_be_focused()
    first.fill("What should we prepare?")
    expect(form.get_by_label("Question 1 id")).to_have_value("what_should_we_prepare")
    form.get_by_label("Question 1 answer type").select_option("textarea")
    form.get_by_label("Question 1 must be answered").check()
    form.get_by_role("button", name="Add a question").click()
    form.get_by_label("Question 2 label").fill("Your level")
    form.get_by_label("Question 2 answer type").select_option("choice")
    choices = form.get_by_label("Question 2 choices (one per line)")
    expect(choices).to_be_visible()
    choices.fill("Beginner\nAdvanced")
    form.get_by_label("Question 2 id").fill("Level!")  # not a valid id
    problems["questions"] = axe_main(page, axe_js, "question editor")

    # Reorder: question 2 moves up, focus stays on what moved.
    form.get_by_role("button", name="Move question 2 up").click()
    expect(form.get_by_label("Question 1 label")).to_have_value("Your level")
    expect(form.get_by_label("Question 2 label")).to_have_value("What should we prepare?")
    expect(form.get_by_role("button", name="Move question 1 up")).to_be_disabled()

    # The server refuses the id: its sentence sits next to that question's id field.
    form.get_by_role("button", name="Add service").click()
    bad_id = form.get_by_label("Question 1 id")
    expect(bad_id).to_have_attribute("aria-invalid", "true")
    expect(bad_id).to_be_focused()
    assert "must be 1-32 of a-z, 0-9 and _" in described_by(app, bad_id)
    expect(form.locator(".form-error")).to_be_hidden()
    problems["question error"] = axe_main(page, axe_js, "question field error")

    # Seats out of range: next to the seats field, the label in place of the API name.
    bad_id.fill("level")
    form.get_by_label("Seats per session").fill("1001")
    form.get_by_role("button", name="Add service").click()
    seats = form.get_by_label("Seats per session")
    expect(seats).to_have_attribute("aria-invalid", "true")
    assert described_by(app, seats).startswith("Seats per session must be between 1 and 1000")
    expect(bad_id).not_to_have_attribute("aria-invalid", "true")
    problems["seats error"] = axe_main(page, axe_js, "seats field error")

    seats.fill("6")
    form.get_by_role("button", name="Add service").click()
    expect(app.locator("#status")).to_have_text("Service added.")
    row = app.get_by_role("row", name=re.compile("^Workshop for six"))
    expect(row).to_contain_text("6 per session")
    expect(row).to_contain_text("2/day, 10/month")

    [made] = [s for s in admin_api(demo_server, "GET", "/services")["services"]
              if s["title"] == "Workshop for six"]
    assert made["seats"] == 6
    assert made["limits"] == {"day": 2, "month": 10}
    assert made["assignment"] == "priority"
    assert made["questions"] == [
        {"id": "level", "label": "Your level", "type": "choice", "required": False,
         "choices": ["Beginner", "Advanced"]},
        {"id": "what_should_we_prepare", "label": "What should we prepare?",
         "type": "textarea", "required": True},
    ]

    # Editing shows what is stored; removing a question and saving removes it.
    app.get_by_role("button", name="Edit Workshop for six").click()
    expect(form.get_by_label("Seats per session")).to_have_value("6")
    expect(form.get_by_label("Per day")).to_have_value("2")
    expect(form.get_by_label("Per week (Monday to Sunday)")).to_have_value("")
    expect(form.get_by_label("By priority")).to_be_checked()
    expect(form.get_by_label("Question 1 id")).to_have_value("level")
    form.get_by_label("Question 1 label").fill("Your level, roughly")
    expect(form.get_by_label("Question 1 id")).to_have_value("level")  # kept once saved
    form.get_by_role("button", name="Remove question 2").click()
    expect(form.get_by_label("Question 2 label")).to_have_count(0)
    form.get_by_label("Per day").fill("")
    form.get_by_role("button", name="Save service").click()
    expect(app.locator("#status")).to_have_text("Service saved.")
    saved = admin_api(demo_server, "GET", f"/services/{made['id']}")
    assert saved["limits"] == {"month": 10}
    assert [q["label"] for q in saved["questions"]] == ["Your level, roughly"]
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_an_experts_limits_priority_weight_and_profile(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    page, app = open_admin(demo_server, browser)
    app.get_by_role("link", name="Experts", exact=True).click()
    app.get_by_role("button", name="Edit Anna Berger").click()
    form = app.locator("#expert-form form")
    expect(form.get_by_label("Priority")).to_have_value("50")
    expect(form.get_by_label("Weight")).to_have_value("1")
    form.get_by_label("Per day").fill("3")
    form.get_by_label("Priority").fill("80")
    form.get_by_label("Weight").fill("0")
    form.get_by_label("Photo address").fill("http://insecure.example/anna.jpg")
    form.get_by_label("Bio").fill("Tax adviser for small shops.")
    form.get_by_role("button", name="Save expert").click()
    weight = form.get_by_label("Weight")
    expect(weight).to_have_attribute("aria-invalid", "true")
    assert described_by(app, weight).startswith("Weight must be between 1 and 100")
    problems = {"expert error": axe_main(page, axe_js, "expert field error")}
    weight.fill("2")
    form.get_by_role("button", name="Save expert").click()
    photo = form.get_by_label("Photo address")
    expect(photo).to_have_attribute("aria-invalid", "true")
    assert "https" in described_by(app, photo)
    photo.fill("https://example.com/anna.jpg")
    form.get_by_role("button", name="Save expert").click()
    expect(app.locator("#status")).to_have_text("Expert saved.")
    anna = admin_api(demo_server, "GET", f"/experts/{demo_server.experts['Anna Berger']}")
    assert (anna["limits"], anna["priority"], anna["weight"]) == ({"day": 3}, 80, 2)
    assert (anna["photo_url"], anna["bio"]) == ("https://example.com/anna.jpg",
                                                "Tax adviser for small shops.")
    expect(app.get_by_role("row", name=re.compile("^Anna Berger"))).to_contain_text("3/day")
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_the_customer_policy_is_set_in_plain_words(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    admin_api(demo_server, "PATCH", "/settings", {"pending_hold_hours": 72})
    page, app = open_admin(demo_server, browser)
    app.get_by_role("link", name="Settings", exact=True).click()
    cancel_by = app.get_by_label("Cancel until (minutes before the start)")
    expect(cancel_by).to_have_value("1440")
    assert described_by(app, cancel_by) == (
        "Customers can cancel until 24 hours before the start.")
    problems = {"settings": axe_main(page, axe_js, "settings with policy")}
    cancel_by.fill("2880")
    assert described_by(app, cancel_by) == "Customers can cancel until 2 days before the start."
    app.get_by_label("Customers may reschedule").uncheck()
    move_by = app.get_by_label("Reschedule until (minutes before the start)")
    assert described_by(app, move_by).startswith("Customers cannot reschedule themselves")
    app.get_by_label("Customers may reschedule").check()
    move_by.fill("90")
    assert described_by(app, move_by) == (
        "Customers can reschedule until 1 hour 30 minutes before the start.")
    app.get_by_label("Reschedules per booking").fill("1")
    assert described_by(app, app.get_by_label("Reschedules per booking")) == (
        "Each booking can be moved by the customer at most once.")
    app.get_by_label("Tell experts about their bookings").uncheck()

    # A value the server refuses: said next to its field, nothing saved.
    app.get_by_label("Reschedules per booking").fill("101")
    app.get_by_role("button", name="Save settings").click()
    most = app.get_by_label("Reschedules per booking")
    expect(most).to_have_attribute("aria-invalid", "true")
    assert described_by(app, most).startswith("Reschedules per booking must be between")
    problems["settings error"] = axe_main(page, axe_js, "settings field error")
    assert admin_api(demo_server, "GET", "/settings")["max_reschedules"] == 2

    most.fill("1")
    app.get_by_role("button", name="Save settings").click()
    expect(app.locator("#status")).to_have_text("Settings saved.")
    saved = admin_api(demo_server, "GET", "/settings")
    assert {k: saved[k] for k in ("customer_cancel", "cancel_notice_minutes",
                                  "customer_reschedule", "reschedule_notice_minutes",
                                  "max_reschedules", "notify_experts")} == {
        "customer_cancel": True, "cancel_notice_minutes": 2880, "customer_reschedule": True,
        "reschedule_notice_minutes": 90, "max_reschedules": 1, "notify_experts": False}
    assert saved["pending_hold_hours"] == 72  # not on the form, kept
    expect(app.get_by_label("Tell experts about their bookings")).not_to_be_checked()
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]


def instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def local_parts(iso: str) -> tuple[str, str]:
    """(date, HH:MM) of an instant in the demo shop's zone."""
    when = instant(iso).astimezone(BERLIN)
    return when.date().isoformat(), when.strftime("%H:%M")


def all_bookings(server: DemoServer) -> dict[str, dict[str, Any]]:
    """Every booking, by order id."""
    found = admin_api(server, "GET", "/bookings?from=2000-01-01T00:00:00Z"
                      "&to=2100-01-01T00:00:00Z")["bookings"]
    return {str(b["order_id"]): b for b in found}


def far_from(slot: dict[str, Any], *others: dict[str, Any]) -> bool:
    """Whether ``slot`` starts at least three hours from each of ``others``."""
    return all(abs(instant(slot["start"]) - instant(o["start"])) >= timedelta(hours=3)
               for o in others)


def test_a_booking_is_rescheduled_from_the_list(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    today = datetime.now(BERLIN).date()
    slots = demo_server.proxy("GET", "availability", {
        "service": demo_server.services[DEEP], "start": today.isoformat(), "days": "21"}
    ).json()["slots"]
    first = slots[0]
    week = monday(datetime.fromisoformat(first["local"]).date())
    mine = [s for s in slots if s["expert"] == first["expert"]
            and monday(datetime.fromisoformat(s["local"]).date()) == week]
    # Two bookings of one expert, apart, and a third time free of both.
    other = next(s for s in mine if far_from(s, first))
    target = next(s for s in mine if far_from(s, first, other))
    book(demo_server, first, 9101, paid=True, name="Rita Resched")
    book(demo_server, other, 9102, paid=True, name="Tom Taken")
    page, app = open_admin(demo_server, browser)
    app.get_by_role("link", name="Bookings", exact=True).click()
    for _ in range((week - monday(today)).days // 7):
        app.get_by_role("button", name="Next week \u203a").click()
    row = app.get_by_role("row", name=re.compile("Rita Resched"))
    expect(row).to_be_visible()
    expect(row.get_by_role("cell").nth(4)).to_have_text("1")  # seats

    opener = row.get_by_role("button", name=re.compile("^Reschedule the booking of Rita"))
    opener.click()
    dialog = app.get_by_role("dialog", name="Reschedule this booking")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("New date")).to_be_focused()
    day, hm = local_parts(first["start"])
    expect(dialog.get_by_label("New date")).to_have_value(day)
    expect(dialog.get_by_label("New time (Europe/Berlin)")).to_have_value(hm)
    problems = {"reschedule dialog": axe_main(page, axe_js, "reschedule dialog")}
    # Escape keeps the booking and gives the focus back.
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(opener).to_be_focused()

    # Onto Tom's time: taken, said in the dialog; the booking keeps its time.
    opener.click()
    taken_day, taken_hm = local_parts(other["start"])
    dialog.get_by_label("New date").fill(taken_day)
    dialog.get_by_label("New time (Europe/Berlin)").fill(taken_hm)
    dialog.get_by_role("button", name="Reschedule", exact=True).click()
    expect(dialog.get_by_role("alert")).to_contain_text("That time is not free")
    expect(dialog).to_be_visible()
    problems["reschedule refused"] = axe_main(page, axe_js, "reschedule refused")
    assert all_bookings(demo_server)["9101"]["start"] == first["start"]

    # A free time: moved, said, and the list shows the new time.
    new_day, new_hm = local_parts(target["start"])
    dialog.get_by_label("New date").fill(new_day)
    dialog.get_by_label("New time (Europe/Berlin)").fill(new_hm)
    dialog.get_by_role("button", name="Reschedule", exact=True).click()
    done = app.get_by_role("dialog", name="Booking rescheduled")
    expect(done.locator("#resched-outcome")).to_contain_text("Booking moved to")
    expect(done.get_by_role("button", name="Close")).to_be_focused()
    done.get_by_role("button", name="Close").click()
    expect(done).to_have_count(0)
    rita = all_bookings(demo_server)["9101"]
    assert (rita["start"], rita["status"]) == (target["start"], "confirmed")
    expect(app.get_by_role("row", name=re.compile("Rita Resched"))).to_contain_text(new_hm)
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]


def book_with(server: DemoServer, slot: dict[str, Any], order_id: int, *, seats: int,
              answers: dict[str, Any], name: str) -> None:
    """A hold of ``seats`` with ``answers``, then its paid order (that many units)."""
    r = server.proxy("POST", "holds", json={
        "service": server.services[DEEP], "expert": slot["expert"], "start": slot["start"],
        "seats": seats, "answers": answers}, visitor=f"198.51.100.{order_id % 200}")
    assert r.status_code == 201, r.text
    first, last = name.split()
    payload = order_payload(order_id, [r.json()["hold"]], price=DEMO_PRODUCTS[DEEP]["price"],
                            first_name=first, last_name=last,
                            email=f"{first.lower()}@example.com", quantity=seats,
                            variant_id=int(DEMO_PRODUCTS[DEEP]["variant_id"]),
                            updated_at=datetime.now().astimezone().isoformat())
    payload["line_items"][0]["product_id"] = int(DEMO_PRODUCTS[DEEP]["product_id"])
    body = json.dumps(payload).encode()
    r = requests.post(f"{server.base}/webhooks", data=body, timeout=10, headers={
        "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": DEMO_SHOP,
        "X-Shopify-Hmac-Sha256": webhook_hmac(body, DEMO_API_SECRET),
        "X-Shopify-Webhook-Id": f"wh-{order_id}", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def test_seats_and_answers_show_in_the_bookings_list(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    service = demo_server.services[DEEP]
    admin_api(demo_server, "PATCH", f"/services/{service}", {"seats": 4, "questions": [
        {"id": "level", "label": "Your level", "type": "choice", "required": True,
         "choices": ["Beginner", "Advanced"]},
        {"id": "notes", "label": "What should we prepare?", "type": "textarea",
         "required": False},
        {"id": "nda", "label": "NDA signed", "type": "checkbox", "required": False},
    ]})
    today = datetime.now(BERLIN).date()
    slots = demo_server.proxy("GET", "availability", {
        "service": service, "start": today.isoformat(), "days": "21"}).json()["slots"]
    slot = slots[0]
    book_with(demo_server, slot, 9301, seats=2, name="Sam Seated",
              answers={"nda": True, "level": "Advanced", "notes": "Our Q3 numbers"})
    page, app = open_admin(demo_server, browser)
    app.get_by_role("link", name="Bookings", exact=True).click()
    week = monday(datetime.fromisoformat(slot["local"]).date())
    for _ in range((week - monday(today)).days // 7):
        app.get_by_role("button", name="Next week \u203a").click()
    row = app.get_by_role("row", name=re.compile("Sam Seated"))
    expect(row.get_by_role("cell").nth(4)).to_have_text("2")
    answers = row.locator("dl.answers > div")
    # In the order of the service's questions, label: answer; a checkbox as Yes/No.
    expect(answers).to_have_text(["Your level:Advanced", "What should we prepare?:Our Q3 numbers",
                                  "NDA signed:Yes"])
    problems = {"bookings with answers": axe_main(page, axe_js, "bookings with answers")}
    no_serious(problems)
    assert page.js_errors == []  # type: ignore[attr-defined]
