"""The storefront calendar for issue 11's capacity and issue 12's waiting list, in
Chromium: seats left and the seats picker (the hold asks for them, the cart line's
quantity follows), "any expert" through the server with the assigned expert named, the
intake questions asked before the hold (labels, required, one error per field, the
server's 422 invalid_answers put on the question it names), experts' photo and bio, and
the waiting list from a day without times (a 429 said politely). axe-core on each state.

Each test starts its own `consultbook demo`; a seated service with questions is created
through the admin API, as a merchant would.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
from playwright.sync_api import Page, Route, expect

from engine.demo import DEMO_TZ
from tests.browser.conftest import DemoServer
from tests.browser.test_storefront_calendar import axe, axe_js, new_page, ready  # noqa: F401

INTRO = "Intro call (30 min)"
QUESTIONS = [
    {"id": "topic", "label": "What would you like to talk about?", "type": "textarea",
     "required": True},
    {"id": "level", "label": "Your level", "type": "choice", "required": True,
     "choices": ["Beginner", "Advanced"]},
    {"id": "phone", "label": "Phone", "type": "phone", "required": False},
    {"id": "terms", "label": "I accept the workshop rules", "type": "checkbox",
     "required": True},
]


def admin(server: DemoServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{server.base}/admin/api/{path}", timeout=10,
                            headers={"Authorization": f"Bearer {server.admin_token()}"},
                            **kwargs)


def workshop(server: DemoServer, seats: int = 3, questions: list[dict[str, Any]] | None = None
             ) -> str:
    """A seated service offered by both demo experts (their hours are the demo's)."""
    r = admin(server, "POST", "services", json={
        "title": "Workshop", "duration_minutes": 60, "min_notice_minutes": 60,
        "seats": seats, "questions": QUESTIONS if questions is None else questions,
        "variant_id": "4100000000009"})
    assert r.status_code == 201, r.text
    service = str(r.json()["id"])
    for expert in server.experts.values():
        have = admin(server, "GET", f"experts/{expert}").json()
        r = admin(server, "PATCH", f"experts/{expert}",
                  json={"services": [*have["services"], service]})
        assert r.status_code == 200, r.text
    return service


def page_for(server: DemoServer, browser: Any, service: str, tz: str = "Europe/Berlin",
             **kwargs: Any) -> Page:
    page = new_page(browser, tz, **kwargs)
    page.goto(f"{server.base}/demo/store/apps/consult/book?service={service}")
    ready(page)
    return page


def posted(request: Any) -> dict[str, Any]:
    return dict(json.loads(request.post_data or "{}"))


# ------------------------------------------------------------------ seats and questions


def test_seats_left_questions_and_the_seats_picker(demo_server: DemoServer, browser: Any,
                                                   axe_js: str) -> None:  # noqa: F811
    service = workshop(demo_server)
    page = page_for(demo_server, browser, service)
    page.locator(".cb-day").first.click()
    slot = page.locator(".cb-slot").first
    expect(slot.locator(".cb-seats")).to_have_text("3 seats left")
    start = slot.get_attribute("data-start")
    slot.click()

    # The questions come before the hold, as a form with labels and a seats picker.
    form = page.locator(".cb-ask")
    expect(form).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("^Your details for"))).to_be_focused()
    seats = page.get_by_label("Seats")
    expect(seats.locator("option")).to_have_count(3)  # 1..min(seats left, seats)
    topic = page.get_by_label(re.compile("^What would you like to talk about"))
    expect(topic).to_have_attribute("required", "")
    assert not [b for b in axe(page, axe_js, "questions")]

    # Nothing answered: each required question says so next to itself; no hold is asked.
    holds: list[Any] = []
    page.on("request", lambda r: holds.append(r) if r.url.endswith("/holds") else None)
    page.get_by_role("button", name="Hold this time").click()
    expect(topic).to_be_focused()
    for label in ("What would you like to talk about?", "Your level",
                  "I accept the workshop rules"):
        field = page.get_by_label(re.compile("^" + re.escape(label)))
        expect(field).to_have_attribute("aria-invalid", "true")
        described = field.get_attribute("aria-describedby") or ""
        expect(page.locator(f"#{described}")).to_have_text("Please answer this question.")
    phone = page.get_by_label("Phone")
    expect(phone).not_to_have_attribute("aria-invalid", "true")
    assert holds == []
    assert not [b for b in axe(page, axe_js, "questions with errors")]

    topic.fill("Sourdough at scale")
    page.get_by_label("Your level").select_option("Advanced")
    page.get_by_label(re.compile("^I accept")).check()
    seats.select_option("2")
    with page.expect_response(lambda r: r.url.endswith("/holds")
                              and r.request.method == "POST") as held:
        page.get_by_role("button", name="Hold this time").click()
    body = posted(held.value.request)
    assert held.value.status == 201, held.value.text()
    assigned = held.value.json()["expert"]
    assert body["seats"] == 2 and body["start"] == start
    assert body["answers"] == {"topic": "Sourdough at scale", "level": "Advanced",
                               "terms": "true"}
    expect(page.get_by_role("heading", name="This time is held for you")).to_be_focused()
    expect(page.locator(".cb-hold-summary")).to_contain_text("2 seats")
    expect(form).to_be_hidden()

    # The seats are the database's: one seat is left for anybody else.
    day = datetime.fromisoformat((start or "").replace("Z", "+00:00")).date()
    r = demo_server.proxy("GET", "availability", {
        "service": service, "start": (day - timedelta(days=1)).isoformat(), "days": "3",
        "expert": assigned})
    left = [s for s in r.json()["slots"] if s["start"] == start]
    assert left and left[0].get("seats_left", 1) == 1, left

    # The cart line's quantity is the hold's seats (the demo cart answered here).
    added: list[dict[str, Any]] = []

    def cart(route: Route) -> None:
        added.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(status=200, content_type="application/json", body="{}")

    page.route("**/cart/add.js", cart)
    page.route("**/demo/store/cart", lambda route: route.fulfill(status=200, body="cart"))
    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url("**/demo/store/cart")
    [item] = added[0]["items"]
    assert item["quantity"] == 2 and item["properties"]["_hold"]
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_the_servers_invalid_answers_lands_on_the_question_it_names(
        demo_server: DemoServer, browser: Any) -> None:
    service = workshop(demo_server, seats=2)
    page = page_for(demo_server, browser, service)
    page.route("**/holds", lambda route: route.fulfill(
        status=422, content_type="application/json", body=json.dumps({"error": {
            "code": "invalid_answers",
            "message": "answer to 'phone' (Phone): is not a valid phone number"}})))
    page.locator(".cb-day").first.click()
    page.locator(".cb-slot").first.click()
    page.get_by_label(re.compile("^What would you like")).fill("Rye")
    page.get_by_label("Your level").select_option("Beginner")
    page.get_by_label(re.compile("^I accept")).check()
    phone = page.get_by_label("Phone")
    phone.fill("+49 30 1234567")
    page.get_by_role("button", name="Hold this time").click()
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(phone).to_be_focused()
    expect(page.locator(f"#{phone.get_attribute('aria-describedby')}")).to_have_text(
        "Please check this answer.")
    expect(page.locator(".cb-ask")).to_be_visible()  # the answers are kept to correct
    expect(page.get_by_label(re.compile("^What would you like"))).to_have_value("Rye")
    assert page.js_errors == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------ any expert, faces


def test_any_expert_is_the_servers_choice_and_is_named(demo_server: DemoServer,
                                                       browser: Any) -> None:
    intro = demo_server.services[INTRO]
    anna = demo_server.experts["Anna Berger"]
    r = admin(demo_server, "PATCH", f"experts/{anna}", json={
        "photo_url": "https://cdn.example.com/anna.jpg", "bio": "Twenty years of sourdough."})
    assert r.status_code == 200, r.text
    page = new_page(browser, "Europe/Berlin")
    with page.expect_request(lambda r: "/availability" in r.url) as first:
        page.goto(f"{demo_server.base}/demo/store/apps/consult/book?service={intro}")
    assert "expert=any" in first.value.url
    ready(page)
    expect(page.get_by_label("Expert")).to_have_value("")  # "Any expert"
    slot = page.locator(".cb-slot").first
    expect(slot).to_have_attribute("data-experts", "any")
    with page.expect_response(lambda r: r.url.endswith("/holds")) as held:
        slot.click()
    assert posted(held.value.request)["expert"] == "any"
    assigned = held.value.json()["expert"]
    names = {v: k for k, v in demo_server.experts.items()}
    expect(page.locator(".cb-hold-summary")).to_contain_text(names[assigned])
    page.get_by_role("button", name="Choose another time").click()
    expect(page.locator(".cb-hold")).to_be_hidden()

    # Choosing Anna shows her face and words, as the merchant entered them.
    page.get_by_label("Expert").select_option(label="Anna Berger")
    card = page.locator(".cb-card-box .cb-expert")
    expect(card).to_contain_text("Twenty years of sourdough.")
    expect(card.locator("img")).to_have_attribute("src", "https://cdn.example.com/anna.jpg")
    expect(card.locator("img")).to_have_attribute("width", "56")  # no layout shift
    assert page.js_errors == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------ waiting list


def test_waitlist_from_a_day_without_times(demo_server: DemoServer, browser: Any,
                                           axe_js: str) -> None:  # noqa: F811
    intro = demo_server.services[INTRO]
    page = new_page(browser, "Europe/Berlin")
    page.goto(f"{demo_server.base}/demo/store/apps/consult/book?service={intro}")
    ready(page)
    # Today in the shop's zone, not UTC's: past days are shown disabled (an hour before
    # midnight UTC it is already tomorrow in Berlin).
    today = datetime.now(ZoneInfo(DEMO_TZ)).date().isoformat()
    off = page.locator(".cb-grid button.cb-off:not(.cb-outside):not([aria-disabled='true'])")
    dates = [d for d in off.evaluate_all("els => els.map(e => e.dataset.date)") if d >= today]
    if not dates:  # every day of this month has times: the next month has a weekend
        page.get_by_role("button", name="Next month").click()
        ready(page)
        dates = off.evaluate_all("els => els.map(e => e.dataset.date)")
    day = dates[0]
    page.locator(f".cb-cell[data-date='{day}']").click()
    expect(page.locator(".cb-slots .cb-empty")).to_have_text("No free times on this day.")
    offer = page.get_by_role("button", name="Tell me when a time frees up")
    expect(offer).to_have_attribute("aria-expanded", "false")
    offer.click()
    email = page.get_by_label("Your email")
    expect(email).to_be_focused()
    email.fill("not an address")
    page.get_by_role("button", name="Notify me").click()
    expect(email).to_have_attribute("aria-invalid", "true")
    assert not [b for b in axe(page, axe_js, "waiting list")]

    email.fill("wait@example.com")
    with page.expect_request(lambda r: r.url.endswith("/waitlist")) as joined:
        page.get_by_role("button", name="Notify me").click()
    # The customer's zone goes along, so the mail shows times in it.
    assert posted(joined.value) == {"service": intro, "date": day, "email": "wait@example.com",
                                    "expert": "any", "tz": "Europe/Berlin"}
    expect(page.locator(".cb-wait .cb-done")).to_contain_text("Thank you.")

    # Over the visitor's limit: said politely, nothing breaks.
    page.route("**/waitlist", lambda route: route.fulfill(
        status=429, content_type="application/json",
        body='{"error": {"code": "too_many_entries", "message": "limit"}}'))
    page.locator(f".cb-cell[data-date='{day}']").click()
    page.get_by_role("button", name="Tell me when a time frees up").click()
    page.get_by_label("Your email").fill("wait@example.com")
    page.get_by_role("button", name="Notify me").click()
    expect(page.get_by_role("alert")).to_have_text(
        "You are already on as many waiting lists as allowed.")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_the_questions_fit_a_phone_right_to_left(demo_server: DemoServer, browser: Any,
                                                 axe_js: str) -> None:  # noqa: F811
    service = workshop(demo_server)
    page = new_page(browser, "Asia/Dubai", viewport={"width": 360, "height": 740},
                    is_mobile=True, has_touch=True)
    page.goto(f"{demo_server.base}/demo/store/apps/consult/book?service={service}&locale=ar")
    ready(page)
    page.locator(".cb-day").first.click()
    expect(page.locator(".cb-slot .cb-seats").first).to_have_text("بقي 3 مقاعد")
    page.locator(".cb-slot").first.click()
    expect(page.locator(".cb-ask")).to_be_visible()
    expect(page.get_by_label("المقاعد")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page scrolls sideways ({width}px wide)"
    assert not [b for b in axe(page, axe_js, "questions, phone, ar")]
    assert page.js_errors == []  # type: ignore[attr-defined]
