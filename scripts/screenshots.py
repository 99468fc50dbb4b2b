"""Take the README's screenshots from a fresh `consultbook demo`.

    python3 scripts/screenshots.py            # writes docs/screenshots/*.png

Starts the demo on a free port with a throw-away SQLite database and outbox, then drives
Debian's Chromium through Playwright: a customer in Los Angeles holds a time (storefront),
books and pays, and the merchant looks at the week in the embedded admin (admin).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_demo(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    env.update(CONSULTBOOK_DATABASE_URL=f"sqlite:///{workdir}/demo.db",
               CONSULTBOOK_OUTBOX_DIR=str(workdir / "outbox"))
    with (workdir / "server.log").open("w") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            [sys.executable, "-m", "engine.cli", "demo", "--port", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("consultbook demo did not start:\n" + (workdir / "server.log").read_text())


def storefront(page: Page, base: str) -> None:
    page.goto(f"{base}/demo/store")
    page.get_by_role("link", name="Intro call (30 min)").click()
    calendar = page.locator("[data-consultbook-booking]")
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    page.get_by_label("Expert").select_option(label="Anna Berger")
    expect(calendar).not_to_have_attribute("aria-busy", "true")
    page.locator(".cb-day").nth(1).click()
    page.locator(".cb-slot").nth(2).click()
    expect(page.locator(".cb-hold")).to_be_visible()
    page.wait_for_timeout(1200)  # let the countdown tick once
    page.screenshot(path=str(OUT / "storefront.png"), full_page=True)


def checkout(page: Page) -> None:
    page.get_by_role("button", name="Add to cart").click()
    page.wait_for_url("**/demo/store/cart")
    page.get_by_label("First name").fill("Lena")
    page.get_by_label("Last name").fill("Lopez")
    page.get_by_label("Email").fill("lena@example.com")
    page.get_by_role("button", name="Pay", exact=False).click()
    expect(page.get_by_role("heading", name="Thank you, Lena!")).to_be_visible()


def admin(page: Page, base: str) -> None:
    page.goto(f"{base}/demo/admin")
    app = page.frame_locator("iframe.app-frame")
    app.get_by_role("link", name="Bookings").click()
    for _ in range(3):
        expect(app.locator(".week")).to_be_visible()
        if app.locator(".chip").count():
            break
        app.get_by_role("button", name="Next week").click()
    page.wait_for_timeout(300)
    page.screenshot(path=str(OUT / "admin.png"))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_demo(Path(tmp))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM)
                customer = browser.new_context(timezone_id="America/Los_Angeles", locale="en-US",
                                               viewport={"width": 1100, "height": 900})
                page = customer.new_page()
                storefront(page, base)
                checkout(page)
                merchant = browser.new_context(timezone_id="Europe/Berlin", locale="en-GB",
                                               viewport={"width": 1280, "height": 820})
                admin(merchant.new_page(), base)
                browser.close()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
    for name in ("storefront.png", "admin.png"):
        print(OUT / name)


if __name__ == "__main__":
    main()
