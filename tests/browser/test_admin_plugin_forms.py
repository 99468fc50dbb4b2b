"""The admin page renders providers it has never heard of: a plugin's connect form and
its provider settings are drawn from what ``GET /admin/api/connections`` declares
(``connect``, ``fields``, ``connect_url``, ``provider_settings``), submitted to the API,
and the server's errors shown inline, next to the field they name. The installed CalDAV
connector gets its own fields the same way, with no CalDAV code in admin.js.

The plugin is a real installed distribution (a ``*.dist-info`` with a
``consultbook.plugins`` entry point on the demo server's ``PYTHONPATH``), discovered by
the server exactly as a ``pip install``-ed one would be.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Frame, FrameLocator, Locator, Page, expect

from tests.browser.conftest import DemoServer
from tests.browser.test_admin_providers_browser import admin_api, open_admin
from tests.browser.test_storefront_calendar import axe_js  # noqa: F401 (a fixture)
from tests.test_plugin_discovery_once import make_distribution

SECRET = "coo-coo-correct-horse"
PLUGIN = f'''
    from engine import hookimpl
    from engine.providers import (CalendarBusy, CalendarProvider, EventRef, FormConnector,
                                  FormField, Grant, ProviderRejected)


    class LoftConnect(FormConnector):
        name = "cbloft"
        label = "Pigeon loft"
        fields = (
            FormField("loft_url", "Loft address", kind="url",
                      help="Where the loft answers, with https://",
                      placeholder="https://loft.example"),
            FormField("keeper", "Keeper email", kind="email", placeholder="you@example.com"),
            FormField("password", "Loft password", kind="password",
                      help="The loft's own password, not your shop's"),
            FormField("perch", "Perch name", required=False),
        )

        def connect(self, *, values):
            if values["password"] != "{SECRET}":
                raise ProviderRejected("the loft refused the password")
            return Grant(account=values["keeper"], credentials=dict(values))


    class LoftCalendar(CalendarProvider):
        name = "cbloft"
        label = "Pigeon loft calendar"
        connection = "cbloft"
        remote = False
        settings = (
            FormField("home_loft", "Home loft", help="The loft bookings fly from"),
            FormField("ring_colour", "Ring colour", required=False, placeholder="blue"),
        )

        def calendar_for_expert(self, expert_id, expert_email):
            return expert_id

        def busy(self, calendars, start, end):
            return {{c: CalendarBusy(()) for c in calendars}}

        def create_event(self, booking, meeting):
            return EventRef(self.name, booking.booking_id, booking.expert_id, None)

        def update_event(self, ref, booking, meeting):
            return ref

        def cancel_event(self, ref, booking):
            return None


    @hookimpl
    def consultbook_register_providers(registry):
        registry.add_connector(LoftConnect)
        registry.add_calendar(LoftCalendar)
'''

INPUT_TYPE = {"text": "text", "password": "password", "url": "url", "email": "email"}


@pytest.fixture
def loft_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the plugin for the demo server started after this fixture."""
    site = make_distribution(tmp_path / "site", "cbtest-pigeon-loft", "pigeon_loft",
                             "cbtest_pigeon_loft", PLUGIN)
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), path) if p))
    return site


def connector(server: DemoServer, name: str) -> dict[str, Any]:
    listed = admin_api(server, "GET", "/connections")["connections"]
    return next(c for c in listed if c["provider"] == name)


def connections_page(server: DemoServer, browser: Any) -> tuple[Page, FrameLocator]:
    page, app = open_admin(server, browser)
    app.get_by_role("link", name="Connections", exact=True).click()
    expect(app.get_by_role("heading", name="Connections", exact=True)).to_be_focused()
    expect(app.locator("#connections")).not_to_have_attribute("aria-busy", "true")
    return page, app


def open_form(app: FrameLocator, label: str) -> Locator:
    """Press the connector's button in the accounts table; its form appears, named by
    its heading, and the first field has the focus."""
    opener = app.get_by_role("table", name="Accounts").get_by_role("button", name=re.compile(
        rf"^(Connect|Reconnect|Change account of) {re.escape(label)}$"))
    expect(opener).to_have_attribute("aria-expanded", "false")
    opener.click()
    expect(opener).to_have_attribute("aria-expanded", "true")
    form = app.get_by_role("form", name=re.compile(rf"^(Connect|Reconnect) {re.escape(label)}$"))
    expect(form).to_be_visible()
    return form


def described_by(field: Locator) -> str:
    """The text of the elements the input's aria-describedby names, in order."""
    return str(field.evaluate("""el => (el.getAttribute('aria-describedby') || '')
        .split(/\\s+/).filter(Boolean)
        .map(id => document.getElementById(id).textContent).join(' | ')"""))


def assert_form_matches(form: Locator, fields: list[dict[str, Any]]) -> None:
    """Every declared field is an input of its kind, labelled (label/for), required when
    declared so, with its help (aria-describedby) and placeholder; nothing else."""
    expect(form.locator("input")).to_have_count(len(fields))
    for spec in fields:
        field = form.get_by_label(spec["label"], exact=False)
        expect(field).to_have_count(1)
        expect(field).to_have_attribute("name", spec["name"])
        expect(field).to_have_attribute("type", INPUT_TYPE[spec["kind"]])
        assert (field.get_attribute("required") is not None) is spec["required"], spec
        if spec["placeholder"]:
            expect(field).to_have_attribute("placeholder", spec["placeholder"])
        assert described_by(field) == spec["help"], spec
        expect(field).to_have_value("")


def admin_frame(page: Page) -> Frame:
    """The embedded admin's frame (the demo's Shopify shell frames it)."""
    frame = page.locator("iframe.app-frame").element_handle().content_frame()
    assert frame is not None
    return frame


def axe_connections(page: Page, source: str, what: str) -> list[dict[str, Any]]:
    frame = admin_frame(page)
    if not frame.evaluate("typeof window.axe !== 'undefined'"):
        frame.add_script_tag(content=source)
    result = frame.evaluate("""() => axe.run(document.querySelector('main'),
        {resultTypes: ['violations']})""")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    print(f"\naxe {what}: {len(result['violations'])} violations, {len(bad)} serious/critical"
          + "".join(f"\n  {v['impact']} {v['id']}: {v['help']} "
                    f"{[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]))
    return bad


def test_a_plugins_connect_form_and_settings_round_trip(
        loft_site: Path, demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    admin_api(demo_server, "PATCH", "/settings", {"calendar_provider": "cbloft"})
    declared = connector(demo_server, "cbloft")
    assert declared["connect"] == "form" and declared["status"] == "not_connected"
    page, app = connections_page(demo_server, browser)
    problems: dict[str, list[dict[str, Any]]] = {}
    problems["connections"] = axe_connections(page, axe_js, "connections")

    form = open_form(app, "Pigeon loft")
    assert_form_matches(form, declared["fields"])
    expect(form.get_by_label("Loft address")).to_be_focused()
    problems["connect form"] = axe_connections(page, axe_js, "connect form")

    # A required field left blank: the server's sentence, next to that field.
    form.get_by_label("Loft address").fill("https://loft.example")
    form.get_by_label("Loft password").fill("wrong")
    form.get_by_role("button", name="Connect Pigeon loft").click()
    keeper = form.get_by_label("Keeper email")
    expect(keeper).to_have_attribute("aria-invalid", "true")
    expect(keeper).to_be_focused()
    assert described_by(keeper) == "Keeper email is required"
    expect(form.locator(".form-error")).to_be_hidden()
    expect(form.get_by_label("Loft password")).to_have_value("")  # a password is not kept
    problems["field error"] = axe_connections(page, axe_js, "field error")

    # Wrong password: the connector's refusal, inline in the form, no field blamed.
    keeper.fill("keeper@example.com")
    form.get_by_label("Loft password").fill("wrong")
    form.get_by_role("button", name="Connect Pigeon loft").click()
    expect(form.get_by_role("alert")).to_have_text("Pigeon loft: the loft refused the password")
    expect(keeper).not_to_have_attribute("aria-invalid", "true")
    assert described_by(keeper) == ""
    expect(form.get_by_label("Loft password")).to_have_value("")
    assert connector(demo_server, "cbloft")["status"] == "not_connected"
    problems["form error"] = axe_connections(page, axe_js, "form error")

    # The right password: connected, the account shown, the password nowhere.
    form.get_by_label("Loft password").fill(SECRET)
    form.get_by_role("button", name="Connect Pigeon loft").click()
    expect(app.locator("#status")).to_have_text("Pigeon loft connected as keeper@example.com.")
    expect(app.get_by_role("row", name=re.compile(
        r"^Pigeon loft keeper@example\.com connected "))).to_be_visible()
    expect(app.get_by_role("form", name=re.compile("Pigeon loft$"))).to_have_count(0)
    assert SECRET not in admin_frame(page).content()
    listed = connector(demo_server, "cbloft")
    assert (listed["status"], listed["account"]) == ("connected", "keeper@example.com")
    assert SECRET not in requests.get(f"{demo_server.base}/admin/api/connections", timeout=10,
                                      headers={"Authorization":
                                               f"Bearer {demo_server.admin_token()}"}).text
    # Opening it again to change the account: every field empty, the password too.
    again = open_form(app, "Pigeon loft")
    expect(again.get_by_label("Loft password")).to_have_value("")
    again.get_by_role("button", name="Cancel").click()
    expect(app.get_by_role("button", name="Change account of Pigeon loft",
                           exact=True)).to_be_focused()

    # The chosen calendar's settings, from provider_settings: a required one blank is
    # refused next to it; then a round trip through PUT, shown again after a reload.
    settings = app.get_by_role("form", name="Pigeon loft calendar settings")
    declared_settings = next(p for p in admin_api(demo_server, "GET", "/connections")
                             ["provider_settings"] if p["provider"] == "cbloft")
    assert_form_matches(settings, declared_settings["fields"])
    settings.get_by_label("Ring colour").fill("green")
    settings.get_by_role("button", name="Save Pigeon loft calendar settings").click()
    home = settings.get_by_label("Home loft")
    expect(home).to_have_attribute("aria-invalid", "true")
    assert described_by(home) == "Home loft is required | The loft bookings fly from"
    assert admin_api(demo_server, "GET", "/providers/calendar/cbloft/settings")["values"] == {
        "home_loft": "", "ring_colour": ""}
    problems["settings error"] = axe_connections(page, axe_js, "settings error")
    home.fill("  North tower ")
    settings.get_by_role("button", name="Save Pigeon loft calendar settings").click()
    expect(app.locator("#status")).to_have_text("Pigeon loft calendar settings saved.")
    expect(settings.get_by_label("Home loft")).to_have_value("North tower")  # as stored
    assert admin_api(demo_server, "GET", "/providers/calendar/cbloft/settings")["values"] == {
        "home_loft": "North tower", "ring_colour": "green"}
    app.get_by_role("button", name="Refresh").click()
    settings = app.get_by_role("form", name="Pigeon loft calendar settings")
    expect(settings.get_by_label("Home loft")).to_have_value("North tower")
    expect(settings.get_by_label("Ring colour")).to_have_value("green")

    assert {k: [v["id"] for v in vs] for k, vs in problems.items() if vs} == {}
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_every_installed_form_connector_gets_its_own_fields(
        demo_server: DemoServer, browser: Any, axe_js: str) -> None:  # noqa: F811
    """CalDAV (and any other installed form connector) rendered from its declaration;
    CalDAV's refusal of an unreachable server is shown inline."""
    listed = admin_api(demo_server, "GET", "/connections")["connections"]
    forms = [c for c in listed if c["connect"] == "form" and c["available"]]
    caldav = next(c for c in forms if c["provider"] == "caldav")
    assert [f["label"] for f in caldav["fields"]][:3] == [
        "CalDAV server URL", "User name", "App password"]
    page, app = connections_page(demo_server, browser)
    for c in forms:
        form = open_form(app, c["label"])
        assert_form_matches(form, c["fields"])
        form.get_by_role("button", name="Cancel").click()
        expect(form).to_have_count(0)
    # OAuth connectors keep their Connect button, which opens no form.
    for c in listed:
        if c["connect"] == "oauth" and c["available"] and c["status"] == "not_connected":
            button = app.get_by_role("button", name=f"Connect {c['label']}", exact=True)
            expect(button).to_be_visible()
            expect(button).not_to_have_attribute("aria-expanded", re.compile("."))

    form = open_form(app, caldav["label"])
    expect(form.get_by_label("App password")).to_have_attribute("type", "password")
    form.get_by_label("CalDAV server URL").fill("http://127.0.0.1:9/dav/")
    form.get_by_label("User name").fill("someone@example.com")
    form.get_by_label("App password").fill("not-a-real-one")
    form.get_by_role("button", name=f"Connect {caldav['label']}").click()
    # The inline error is the JSON error body's message, as the API gives it.
    values = {"url": "http://127.0.0.1:9/dav/", "username": "someone@example.com",
              "password": "not-a-real-one"}
    refused = requests.post(f"{demo_server.base}{caldav['connect_url']}", timeout=30,
                            json={"values": values},
                            headers={"Authorization": f"Bearer {demo_server.admin_token()}"})
    assert 400 <= refused.status_code < 600, refused.text
    message = refused.json()["error"]["message"]
    error = form.locator(".form-error, .field-error").filter(has_text=re.compile("."))
    expect(error).to_have_count(1)
    expect(error).to_have_text(message)
    expect(form.get_by_label("App password")).to_have_value("")
    assert connector(demo_server, "caldav")["status"] == "not_connected"
    problems = axe_connections(page, axe_js, "caldav error")
    assert [v["id"] for v in problems] == []
    assert page.js_errors == []  # type: ignore[attr-defined]
