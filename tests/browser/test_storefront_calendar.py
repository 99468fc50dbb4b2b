"""The storefront calendar in Chromium: the month grid by keyboard, time zones (detected,
aliases resolved, searched), the shop's language (catalogs, Intl, right to left), no
layout shift while times load, what the block weighs, and axe-core's verdict.

Each test starts its own `consultbook demo` and drives the calendar page through the
demo's App Proxy (``/demo/store/apps/consult/book``, ``?locale=`` as the storefront's
locale) or the product page that embeds it like the theme block.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from playwright.sync_api import Page, Request, Route, expect

from tests.browser.conftest import DemoServer, in_ci

INTRO = "Intro call (30 min)"
ROOT = Path(__file__).resolve().parents[2]
AXE_VERSION = "4.10.3"
MONTHS_DE = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
             "September", "Oktober", "November", "Dezember"]


def new_page(browser: Any, tz: str, locale: str = "en-GB", **kwargs: Any) -> Page:
    context = browser.new_context(timezone_id=tz, locale=locale, **kwargs)
    page: Page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(10_000)
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


def book_url(server: DemoServer, locale: str | None = None) -> str:
    url = f"{server.base}/demo/store/apps/consult/book?service={server.services[INTRO]}"
    return url + (f"&locale={locale}" if locale else "")


def ready(page: Page) -> None:
    calendar = page.locator("[data-consultbook-booking]")
    expect(calendar).to_have_class(re.compile("cb-ready"))
    expect(calendar).not_to_have_attribute("aria-busy", "true")


def focused_date(page: Page) -> str:
    return str(page.evaluate("document.activeElement.dataset.date || ''"))


def tab_stops(page: Page) -> int:
    return int(page.locator(".cb-grid button[tabindex='0']").count())


def d(iso: str) -> date:
    return date.fromisoformat(iso)


# ------------------------------------------------------------------ keyboard, one tab stop


def test_month_grid_by_keyboard_then_book_a_time(demo_server: DemoServer, browser: Any) -> None:
    page = new_page(browser, "Europe/Berlin")
    page.goto(book_url(demo_server))
    ready(page)
    grid = page.get_by_role("grid")
    expect(grid.locator("tbody tr")).to_have_count(6)  # six weeks, always
    assert tab_stops(page) == 1
    stop = page.locator(".cb-grid button[tabindex='0']")
    stop.focus()
    start = d(focused_date(page))
    month = page.locator(".cb-month").inner_text()

    page.keyboard.press("ArrowRight")
    assert d(focused_date(page)) == start + timedelta(days=1)
    page.keyboard.press("ArrowDown")
    assert d(focused_date(page)) == start + timedelta(days=8)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    assert d(focused_date(page)) == start
    assert tab_stops(page) == 1
    page.keyboard.press("Home")  # en-GB weeks start on Monday
    assert d(focused_date(page)).weekday() == 0
    assert d(focused_date(page)) > start - timedelta(days=7)
    page.keyboard.press("End")
    assert d(focused_date(page)).weekday() == 6
    sunday = d(focused_date(page))

    # Page Down: the same day a month on, in the next month's grid; Page Up comes back.
    page.keyboard.press("PageDown")
    later = d(focused_date(page))
    assert (later.year * 12 + later.month) - (sunday.year * 12 + sunday.month) == 1
    assert later.day == min(sunday.day, 28) or later.day == sunday.day
    expect(page.locator(".cb-month")).not_to_have_text(month)
    expect(page.locator("[data-consultbook-booking]")).not_to_have_attribute("aria-busy", "true")
    assert tab_stops(page) == 1
    page.keyboard.press("PageUp")
    expect(page.locator(".cb-month")).to_have_text(month)
    back = d(focused_date(page))
    assert back.month == sunday.month
    ready(page)
    assert tab_stops(page) == 1

    # Days without times can be visited but not chosen; Tab leaves the grid at once.
    off = page.locator(".cb-grid button.cb-off").first
    expect(off).to_have_attribute("aria-disabled", "true")
    page.keyboard.press("Tab")
    assert page.evaluate("!document.activeElement.closest('.cb-grid')")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.getAttribute('tabindex')") == "0"

    # Walk to a day with times by arrows, choose it with Enter.
    for _ in range(60):
        if page.evaluate("document.activeElement.classList.contains('cb-day')"):
            break
        page.keyboard.press("ArrowRight")
    chosen = focused_date(page)
    assert chosen, "no day with times reachable by the arrow keys"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("^Times on"))).to_be_focused()
    cell = page.locator(f".cb-day[data-date='{chosen}']")
    expect(cell).to_have_attribute("aria-pressed", "true")
    selected = page.locator(f"td[role=gridcell][aria-selected=true] [data-date='{chosen}']")
    expect(selected).to_have_count(1)

    # Tab into the times, hold one with Enter, add it to the cart: booking as before.
    with page.expect_request(lambda r: r.url.endswith("/holds") and r.method == "POST") as held:
        page.keyboard.press("Tab")
        slot_start = page.evaluate("document.activeElement.dataset.start")
        page.keyboard.press("Enter")
    assert json.loads(held.value.post_data or "{}")["tz"] == "Europe/Berlin"
    expect(page.get_by_role("heading", name="This time is held for you")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Add to cart")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url("**/demo/store/cart")
    page.get_by_label("First name").fill("Kim")
    page.get_by_label("Last name").fill("Key")
    page.get_by_label("Email").fill("kim@example.com")
    page.get_by_role("button", name=re.compile("^Pay")).click()
    expect(page.locator(".webhook")).to_have_attribute("data-webhook-status", "200")
    token = demo_server.admin_token()
    now = datetime.now(UTC)
    r = requests.get(f"{demo_server.base}/admin/api/bookings", timeout=10,
                     headers={"Authorization": f"Bearer {token}"},
                     params={"from": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "to": (now + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    [booking] = r.json()["bookings"]
    assert booking["start"] == slot_start and booking["status"] == "confirmed"
    assert page.js_errors == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------ time zones


def test_alias_from_the_browser_resolves_and_the_search_finds_zones(
        demo_server: DemoServer, browser: Any) -> None:
    page = new_page(browser, "Asia/Calcutta")  # what Chromium (ICU) calls India
    seen: list[Request] = []
    page.on("request", lambda r: seen.append(r) if "/availability" in r.url else None)
    page.goto(book_url(demo_server))
    ready(page)
    zone = page.get_by_label("Your time zone")
    expect(zone).to_have_value("Asia/Kolkata")
    expect(page.locator(".cb-tz-desc")).to_contain_text("Kolkata, UTC+05:30")
    assert {parse_qs(urlparse(r.url).query)["tz"][0] for r in seen} == {"Asia/Kolkata"}

    # The shop's time is said once, under the heading, not under every slot.
    expect(page.locator(".cb-shop-tz")).to_contain_text("Europe/Berlin")
    page.locator(".cb-day").first.click()
    expect(page.locator(".cb-slot").first).to_be_visible()
    visible = page.evaluate("""() => {
        const c = document.querySelector('[data-consultbook-booking]').cloneNode(true);
        c.querySelectorAll('.cb-sr, [hidden]').forEach(n => n.remove());
        return c.textContent; }""")
    assert visible.count("Europe/Berlin") == 1, visible
    assert "shop time" not in visible
    box = page.locator(".cb-slot").first.bounding_box()
    assert box is not None and box["height"] < 60  # one line per time

    # Search by typing: a city, an old name, then choose with the keyboard.
    zone.click()
    zone.fill("Kolk")
    listbox = page.get_by_role("listbox", name="Time zones")
    expect(zone).to_have_attribute("aria-expanded", "true")
    expect(listbox.get_by_role("option", name=re.compile("Kolkata"))).to_have_count(1)
    zone.fill("Calcutta")
    expect(listbox.get_by_role("option")).to_have_count(1)
    expect(listbox.get_by_role("option").first).to_contain_text("Asia/Kolkata")
    zone.fill("")
    page.keyboard.type("tokyo")
    expect(listbox.get_by_role("option", name=re.compile("Tokyo"))).to_have_count(1)
    active = zone.get_attribute("aria-activedescendant")
    assert active and page.locator(f"#{active}").inner_text().startswith("Tokyo")
    # Grouped by offset: Tokyo's group is UTC+09:00.
    group = page.locator(f"#{active}").locator("xpath=..")
    expect(group).to_have_attribute("role", "group")
    assert page.locator(f"#{group.get_attribute('aria-labelledby')}").inner_text() == "UTC+09:00"
    seen.clear()
    page.keyboard.press("Enter")
    expect(zone).to_have_value("Asia/Tokyo")
    expect(zone).to_have_attribute("aria-expanded", "false")
    ready(page)
    assert {parse_qs(urlparse(r.url).query)["tz"][0] for r in seen} == {"Asia/Tokyo"}

    # Escape restores; the hold carries the chosen zone.
    zone.fill("Lima")
    page.keyboard.press("Escape")
    expect(zone).to_have_value("Asia/Tokyo")
    page.locator(".cb-day").first.click()
    with page.expect_request(lambda r: r.url.endswith("/holds") and r.method == "POST") as held:
        page.locator(".cb-slot").first.click()
    assert json.loads(held.value.post_data or "{}")["tz"] == "Asia/Tokyo"
    assert page.js_errors == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------ the shop's language


def test_german_and_japanese_catalogs_and_intl_dates(demo_server: DemoServer,
                                                     browser: Any) -> None:
    page = new_page(browser, "Europe/Berlin", locale="de-DE")
    page.goto(book_url(demo_server, "de"))
    ready(page)
    expect(page.get_by_role("heading", name=f"Buchen: {INTRO}")).to_be_visible()  # title as entered
    expect(page.get_by_label("Ihre Zeitzone")).to_have_value("Europe/Berlin")
    expect(page.get_by_role("button", name="Nächster Monat")).to_be_visible()
    expect(page.locator("[data-consultbook-booking]")).to_have_attribute("lang", re.compile("^de"))
    month = page.locator(".cb-month").inner_text()
    assert re.fullmatch(rf"({'|'.join(MONTHS_DE)}) \d{{4}}", month), month
    assert page.locator(".cb-grid thead th").all_inner_texts() == list("MDMDFSS")
    page.locator(".cb-day").first.click()
    heading = page.get_by_role("heading", name=re.compile("^Termine am")).inner_text()
    months = "|".join(MONTHS_DE)
    assert re.fullmatch(rf"Termine am \w+, \d{{1,2}}\. ({months}) \d{{4}}", heading), heading
    expect(page.locator(".cb-legend")).to_have_text(
        "Tage mit freien Terminen sind mit einem Punkt markiert.")
    page.locator(".cb-slot").first.click()
    expect(page.get_by_role("heading", name="Dieser Termin ist für Sie reserviert")).to_be_focused()
    expect(page.get_by_role("button", name="In den Warenkorb")).to_be_visible()

    page = new_page(browser, "Asia/Tokyo", locale="ja-JP")
    page.goto(book_url(demo_server, "ja"))
    ready(page)
    expect(page.get_by_role("heading", name=f"予約\uff1a{INTRO}")).to_be_visible()
    expect(page.get_by_label("あなたのタイムゾーン")).to_have_value("Asia/Tokyo")
    assert re.fullmatch(r"\d{4}年\d{1,2}月", page.locator(".cb-month").inner_text())
    assert page.locator(".cb-grid thead th").all_inner_texts()[0] in ("月", "日")
    page.locator(".cb-day").first.click()
    assert re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日\S+ の空き時間",
                        page.locator(".cb-slots-section .cb-h").inner_text())
    expect(page.get_by_role("button", name="次の月")).to_be_visible()
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_right_to_left_arabic_and_an_unshipped_language(demo_server: DemoServer,
                                                        browser: Any) -> None:
    page = new_page(browser, "Asia/Dubai", locale="ar", viewport={"width": 390, "height": 800})
    page.goto(book_url(demo_server, "ar"))
    ready(page)
    root = page.locator("[data-consultbook-booking]")
    expect(root).to_have_attribute("dir", "rtl")
    expect(page.get_by_label("منطقتك الزمنية")).to_have_value("Asia/Dubai")
    # Mirrored: the week runs right to left, and ArrowLeft goes to the next day.
    page.locator(".cb-grid button[tabindex='0']").focus()
    where = ("(() => { const a = document.activeElement; return [a.closest('tr').rowIndex, "
             "a.getBoundingClientRect().x]; })()")
    before = d(focused_date(page))
    row0, x0 = page.evaluate(where)
    page.keyboard.press("ArrowLeft")
    assert d(focused_date(page)) == before + timedelta(days=1)
    row1, x1 = page.evaluate(where)
    assert x1 < x0 if row1 == row0 else row1 == row0 + 1  # leftwards, or the next week
    page.keyboard.press("ArrowRight")
    assert d(focused_date(page)) == before
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page = new_page(browser, "Asia/Jerusalem", locale="he")
    page.goto(book_url(demo_server, "he"))
    ready(page)
    root = page.locator("[data-consultbook-booking]")
    expect(root).to_have_attribute("lang", "en")  # English strings, laid out as English
    expect(root).to_have_attribute("dir", "ltr")
    expect(page.get_by_label("Your time zone")).to_have_value("Asia/Jerusalem")
    assert page.js_errors == []  # type: ignore[attr-defined]


# ------------------------------------------------------------------ layout shift, weight


CLS_OBSERVER = """
window.__cls = 0; window.__shifts = [];
new PerformanceObserver(list => {
  for (const e of list.getEntries()) {
    if (!e.hadRecentInput) { window.__cls += e.value; window.__shifts.push(e.value); }
  }
}).observe({type: 'layout-shift', buffered: true});
"""


@pytest.mark.parametrize("where", ["product", "book"])
def test_no_layout_shift_while_times_load(demo_server: DemoServer, browser: Any,
                                          where: str) -> None:
    page = new_page(browser, "America/New_York", viewport={"width": 1024, "height": 900})
    page.add_init_script(CLS_OBSERVER)

    def slow(route: Route) -> None:
        page.wait_for_timeout(1200)  # times arrive well after the page is drawn
        route.continue_()

    page.route(re.compile(r".*/availability\?.*"), slow)
    url = (f"{demo_server.base}/demo/store/products/{demo_server.services[INTRO]}"
           if where == "product" else book_url(demo_server))
    page.goto(url)
    expect(page.locator("[data-consultbook-booking]")).to_have_class(re.compile("cb-ready"))
    expect(page.locator(".cb-skel")).to_have_count(8)  # the skeleton holds the times' place
    ready(page)
    expect(page.locator(".cb-slot").first).to_be_visible()
    page.wait_for_timeout(300)
    cls = page.evaluate("window.__cls")
    print(f"\nCLS while times load ({where} page): {cls:.4f} "
          f"shifts={page.evaluate('window.__shifts')}")
    assert cls < 0.1


def _gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6))


def test_the_block_weighs_under_30_kb_gzipped_and_uses_no_cdn(demo_server: DemoServer,
                                                               browser: Any) -> None:
    page = new_page(browser, "Europe/Berlin")
    bodies: dict[str, bytes] = {}
    origins: set[str] = set()

    def seen(response: Any) -> None:
        origins.add(urlparse(response.url).netloc)
        kind = response.request.resource_type
        if kind in ("script", "stylesheet") and "/static/booking." in response.url:
            bodies[urlparse(response.url).path] = response.body()

    page.on("response", seen)
    page.goto(book_url(demo_server, "de"))
    ready(page)
    assert set(bodies) == {"/static/booking.js", "/static/booking.css"}
    catalog = page.locator("[data-consultbook-booking]").get_attribute("data-i18n") or ""
    largest = max(_gz((ROOT / "web/static/i18n" / f).read_bytes())
                  for f in os.listdir(ROOT / "web/static/i18n"))
    sizes = {path: _gz(body) for path, body in bodies.items()}
    total = sum(sizes.values()) + max(largest, _gz(catalog.encode()))
    print(f"\ngzipped: {sizes}, catalog (largest, inlined) {largest} B, total {total} B")
    assert total < 30 * 1024
    # The theme block loads the very same files.
    for name in ("js", "css"):
        assert (ROOT / f"extensions/consultbook-booking/assets/consultbook-booking.{name}"
                ).read_bytes() == bodies[f"/static/booking.{name}"]
    assert origins == {urlparse(demo_server.base).netloc}


# ------------------------------------------------------------------ axe-core


def _axe_source(cache: Path) -> str:
    """axe-core from npm into a tests-only folder (never shipped, never from a CDN)."""
    given = os.environ.get("CONSULTBOOK_TEST_AXE_JS")
    if given:
        return Path(given).read_text(encoding="utf-8")
    target = cache / f"axe-core-{AXE_VERSION}"
    js = target / "node_modules/axe-core/axe.min.js"
    if not js.is_file():
        npm = shutil.which("npm")
        problem = "npm is not installed" if not npm else ""
        if npm:
            target.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund",
                                   "--prefix", str(target), f"axe-core@{AXE_VERSION}"],
                                  capture_output=True, text=True, timeout=300)
            problem = "" if done.returncode == 0 else done.stderr[-500:]
        if not js.is_file():
            message = f"axe-core {AXE_VERSION} could not be installed from npm: {problem}"
            if in_ci():
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
    return js.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def axe_js() -> str:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "consultbook-tests"
    return _axe_source(cache)


def axe(page: Page, source: str, what: str) -> list[dict[str, Any]]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=source)
    result = page.evaluate("""() => axe.run(document.querySelector('[data-consultbook-booking]'),
        {resultTypes: ['violations']})""")
    bad = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    print(f"\naxe {what}: {len(result['violations'])} violations, {len(bad)} serious/critical"
          + "".join(f"\n  {v['impact']} {v['id']}: {v['help']} "
                    f"{[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]))
    return bad


def test_axe_finds_no_serious_violations(demo_server: DemoServer, browser: Any,
                                         axe_js: str) -> None:
    problems: dict[str, list[dict[str, Any]]] = {}
    for locale, tz in (("en", "America/Los_Angeles"), ("de", "Europe/Berlin"),
                       ("ar", "Asia/Dubai")):
        page = new_page(browser, tz)
        page.goto(book_url(demo_server, locale))
        ready(page)
        problems[f"{locale} calendar"] = axe(page, axe_js, f"{locale} calendar")
        page.locator(".cb-day").first.click()
        problems[f"{locale} times"] = axe(page, axe_js, f"{locale} times")
        zone = page.locator(".cb-tz-input")
        zone.click()
        zone.fill("a")
        expect(page.locator(".cb-tz-option").first).to_be_visible()
        problems[f"{locale} zone list"] = axe(page, axe_js, f"{locale} zone list")
        page.keyboard.press("Escape")
        page.locator(".cb-slot").first.click()
        expect(page.locator(".cb-hold")).to_be_visible()
        problems[f"{locale} hold"] = axe(page, axe_js, f"{locale} hold")
    page = new_page(browser, "Asia/Tokyo", viewport={"width": 360, "height": 740})
    page.goto(f"{demo_server.base}/demo/store/products/{demo_server.services[INTRO]}")
    ready(page)
    problems["product page, phone"] = axe(page, axe_js, "product page, phone")
    assert {k: [v["id"] for v in vs] for k, vs in problems.items() if vs} == {}


# ------------------------------------------------------------------ generated parts


def test_generated_catalog_alias_table_and_extension_are_current() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts/sync_extension_assets.py"),
                           "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import tz_aliases
    finally:
        sys.path.pop(0)
    js = (ROOT / "web/static/booking.js").read_text(encoding="utf-8")
    header = re.search(r"GENERATED tz-aliases: scripts/tz_aliases\.py from tzdata (\S+)", js)
    table = json.loads(re.search(r"var TZ_ALIASES = (\{.*?\});", js).group(1))  # type: ignore[union-attr]
    assert table["Asia/Calcutta"] == "Asia/Kolkata"
    assert table["US/Eastern"] == "America/New_York"
    assert "Europe/Oslo" not in table and "UTC" not in table  # names people know stay
    from zoneinfo import ZoneInfo

    for alias, target in table.items():
        ZoneInfo(target)  # the server accepts every name the calendar sends
        assert target not in table, (alias, target)
    if header and header.group(1) == tz_aliases.tzdata_version():
        assert table == tz_aliases.aliases(), "run python3 scripts/tz_aliases.py"
