"""The admin page in a real browser: a plugin's provider in the settings, and the cancel
dialog that says what happens to the money.

The plugin is a real installed distribution (a ``*.dist-info`` with a
``consultbook.plugins`` entry point on the demo server's ``PYTHONPATH``), so the server
discovers it exactly as it would a ``pip install``-ed one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from playwright.sync_api import Page, expect

from engine.config import DEMO_API_SECRET
from engine.demo import DEMO_PRODUCTS, DEMO_SHOP
from engine.shopify import webhook_hmac
from tests.browser.conftest import DemoServer
from tests.browser.test_demo_browser import new_page
from tests.conftest import order_payload
from tests.test_plugin_discovery_once import make_distribution

BERLIN = ZoneInfo("Europe/Berlin")
DEEP = "Deep-dive session (60 min)"

PIGEON = """
    from engine import hookimpl
    from engine.providers import VideoProvider


    class PigeonVideo(VideoProvider):
        name = "pigeon"
        label = "Carrier pigeon video"

        def create_meeting(self, booking):
            return None


    @hookimpl
    def consultbook_register_providers(registry):
        registry.add_video(PigeonVideo)
"""


@pytest.fixture
def pigeon_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the plugin for the demo server started after this fixture."""
    site = make_distribution(tmp_path / "site", "cbtest-pigeon-video", "pigeon_video",
                             "cbtest_pigeon_video", PIGEON)
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), path) if p))
    return site


def admin_api(server: DemoServer, method: str, path: str, body: Any = None) -> Any:
    r = requests.request(method, f"{server.base}/admin/api{path}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {server.admin_token()}"})
    assert r.ok, r.text
    return r.json() if r.content else None


def open_admin(server: DemoServer, browser: Any) -> tuple[Page, Any]:
    page = new_page(browser, "Europe/Berlin")
    page.goto(f"{server.base}/demo/admin")
    app = page.frame_locator("iframe.app-frame")
    expect(app.get_by_role("heading", name="Home", level=2)).to_be_visible()  # the landing
    app.get_by_role("link", name="Services", exact=True).click()
    expect(app.get_by_role("heading", name="Services")).to_be_visible()
    return page, app


def installed_video_labels() -> list[str]:
    """The labels of the video providers this installation registers (what the admin
    offers besides the test's own plugin)."""
    from engine.plugins import load_plugins
    from tests.conftest import make_config

    registry = load_plugins(make_config("sqlite://")).providers
    return [(registry.get("video", n).label or n)  # type: ignore[union-attr]
            for n in registry.names("video")]


def test_a_plugins_provider_is_offered_by_its_label(
        pigeon_site: Path, demo_server: DemoServer, browser: Any) -> None:
    admin_api(demo_server, "PATCH", "/settings", {"pending_hold_hours": 72})
    page, app = open_admin(demo_server, browser)
    app.get_by_role("link", name="Settings", exact=True).click()
    video = app.get_by_label("Video")
    # Every registered video provider, by label: the plugin's beside the installed ones.
    expect(video.locator("option")).to_have_text(
        sorted([*installed_video_labels(), "Carrier pigeon video"]))
    expect(video.locator("option[value=pigeon]")).to_have_text("Carrier pigeon video")
    expect(app.get_by_label("Calendar").locator("option[value=google]")).to_have_text(
        "Google Calendar")
    video.select_option(label="Carrier pigeon video")
    app.get_by_role("button", name="Save settings").click()
    expect(app.locator("#status")).to_have_text("Settings saved.")
    expect(app.get_by_label("Video")).to_have_value("pigeon")
    saved = admin_api(demo_server, "GET", "/settings")
    assert saved["video_provider"] == "pigeon"
    # The form does not show pending_hold_hours; saving it kept its value.
    assert saved["pending_hold_hours"] == 72
    assert page.js_errors == []  # type: ignore[attr-defined]


# ---------------------------------------------------------------- cancel dialog


def book(server: DemoServer, slot: dict[str, Any], order_id: int, *, paid: bool,
         name: str) -> None:
    """A hold on ``slot``, then Shopify's orders/create for it (paid or pending)."""
    service = server.services[DEEP]
    r = server.proxy("POST", "holds", json={"service": service, "expert": slot["expert"],
                                            "start": slot["start"]},
                     visitor=f"198.51.100.{order_id % 200}")
    assert r.status_code == 201, r.text
    first, last = name.split()
    payload = order_payload(order_id, [r.json()["hold"]],
                            financial_status="paid" if paid else "pending",
                            price=DEMO_PRODUCTS[DEEP]["price"], first_name=first,
                            last_name=last, email=f"{first.lower()}@example.com",
                            variant_id=int(DEMO_PRODUCTS[DEEP]["variant_id"]),
                            updated_at=datetime.now().astimezone().isoformat())
    payload["line_items"][0]["product_id"] = int(DEMO_PRODUCTS[DEEP]["product_id"])
    body = json.dumps(payload).encode()
    r = requests.post(f"{server.base}/webhooks", data=body, timeout=10, headers={
        "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": DEMO_SHOP,
        "X-Shopify-Hmac-Sha256": webhook_hmac(body, DEMO_API_SECRET),
        "X-Shopify-Webhook-Id": f"wh-{order_id}", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


@pytest.fixture
def two_bookings(demo_server: DemoServer) -> Iterator[date]:
    """A paid and a pending booking in one week; yields that week's Monday (Berlin)."""
    today = datetime.now(BERLIN).date()
    slots = demo_server.proxy("GET", "availability", {
        "service": demo_server.services[DEEP], "start": today.isoformat(), "days": "21"}
    ).json()["slots"]
    local = [(datetime.fromisoformat(s["local"]).date(), s) for s in slots]
    week = monday(local[0][0])
    same_week = [s for d, s in local if monday(d) == week]
    paid_slot = same_week[0]
    # Another expert's time, so that the service's buffers cannot make the two collide.
    pending_slot = next(s for s in same_week if s["expert"] != paid_slot["expert"])
    book(demo_server, paid_slot, 9001, paid=True, name="Paula Paid")
    book(demo_server, pending_slot, 9002, paid=False, name="Peter Pending")
    yield week


def bookings_week(app: Any, week: date) -> None:
    app.get_by_role("link", name="Bookings", exact=True).click()
    for _ in range((week - monday(datetime.now(BERLIN).date())).days // 7):
        app.get_by_role("button", name="Next week \u203a").click()
    expect(app.get_by_role("cell", name="pending", exact=True)).to_be_visible()


def test_the_cancel_dialog_says_what_happens_to_the_money(
        demo_server: DemoServer, two_bookings: date, browser: Any) -> None:
    admin_api(demo_server, "PATCH", "/settings", {"auto_refund": True})
    page, app = open_admin(demo_server, browser)
    bookings_week(app, two_bookings)

    # A paid booking: the dialog names the refund entry and the Shopify refund.
    opener = app.get_by_role("button", name=re.compile("^Cancel the booking of Paula Paid"))
    opener.click()
    dialog = app.get_by_role("dialog", name="Cancel this booking?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("The customer is mailed")
    expect(dialog).to_contain_text("A refund entry (merchant cancelled) of")
    expect(dialog).to_contain_text("and it is refunded through Shopify")
    expect(dialog.get_by_role("button", name="Keep the booking")).to_be_focused()
    # Keeping it (Escape) changes nothing and gives focus back.
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(opener).to_be_focused()
    assert admin_api(demo_server, "GET", "/refunds")["refunds"] == []

    opener.click()
    dialog.get_by_role("button", name="Cancel the booking").click()
    done = app.get_by_role("dialog", name="Booking cancelled")
    expect(done.locator("#cancel-outcome")).to_have_text(re.compile(
        r"^Booking cancelled\. A refund entry \(merchant cancelled\) of .*120\.00 was "
        r"written to the refund log\. It is being refunded through Shopify\.$"))
    expect(done.get_by_role("button", name="Close")).to_be_focused()
    done.get_by_role("button", name="Close").click()
    [refund] = admin_api(demo_server, "GET", "/refunds")["refunds"]
    assert (refund["reason"], refund["amount"], refund["currency"]) == (
        "merchant_cancelled", "120.00", "EUR")

    # A pending booking: nothing was paid, nothing is refunded -- before and after.
    app.get_by_role("button", name=re.compile("^Cancel the booking of Peter Pending")).click()
    dialog = app.get_by_role("dialog", name="Cancel this booking?")
    expect(dialog).to_contain_text("nothing was paid, nothing is refunded")
    expect(dialog).not_to_contain_text("refund entry")
    dialog.get_by_role("button", name="Cancel the booking").click()
    expect(app.locator("#cancel-outcome")).to_have_text(
        "Booking cancelled. Nothing was paid, so nothing is refunded.")
    app.get_by_role("button", name="Close").click()
    expect(app.get_by_role("cell", name="cancelled", exact=True)).to_have_count(2)
    assert len(admin_api(demo_server, "GET", "/refunds")["refunds"]) == 1
    assert page.js_errors == []  # type: ignore[attr-defined]
