"""Browser tests: the real `consultbook demo` server in a subprocess, driven by Playwright
through Debian's Chromium. Every test here is marked ``browser``.

Without Chromium they skip on a developer's machine, saying why; in CI (``CI`` set to
``true``/``1``/``yes``, as GitHub Actions, GitLab and most runners do) they fail instead,
so a CI image that lost its browser cannot pass by skipping the browser tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from engine.config import DEMO_API_SECRET
from engine.demo import DEMO_SHOP
from engine.shopify import sign_proxy

# Debian's Chromium; CONSULTBOOK_TEST_CHROMIUM points elsewhere (or nowhere, to check
# what a run without a browser does).
CHROMIUM = Path(os.environ.get("CONSULTBOOK_TEST_CHROMIUM", "/usr/bin/chromium"))
HERE = Path(__file__).resolve().parent


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this run is CI's: ``CI`` set to a true value."""
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


MISSING = (f"{CHROMIUM} is not installed (apt-get install chromium); "
           "in CI (CI=true) the browser tests fail instead of skipping")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason=MISSING)
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists() and not in_ci():
                item.add_marker(skip)


def require_chromium() -> None:
    """In CI a missing browser is a failure of the run, not a reason to skip (outside CI
    the tests were marked skipped at collection and never get here)."""
    if not CHROMIUM.exists():
        pytest.fail(f"CI is set and {CHROMIUM} is not installed: the browser tests cannot "
                    "run (install chromium in the CI image)", pytrace=False)


@pytest.fixture(autouse=True)
def _chromium_is_there() -> None:
    require_chromium()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoServer:
    """A running `consultbook demo` (SQLite and outbox in a temp dir)."""

    base: str
    outbox: Path
    log: Path
    services: dict[str, str] = field(default_factory=dict)  # title -> id
    experts: dict[str, str] = field(default_factory=dict)  # name -> id

    def proxy(self, method: str, path: str, params: dict[str, str] | None = None,
              visitor: str = "203.0.113.7", **kwargs: Any) -> requests.Response:
        """A call through the App Proxy as Shopify makes it for another storefront visitor."""
        signed = {**(params or {}), "shop": DEMO_SHOP, "logged_in_customer_id": "",
                  "path_prefix": "/apps/consult", "timestamp": str(int(time.time()))}
        signed["signature"] = sign_proxy(signed, DEMO_API_SECRET)
        return requests.request(method, f"{self.base}/proxy/{path}?{urlencode(signed)}",
                                headers={"X-Forwarded-For": visitor}, timeout=10, **kwargs)

    def admin_token(self) -> str:
        return str(requests.get(f"{self.base}/demo/session-token", timeout=10).json()["token"])

    def mails(self) -> list[Path]:
        return sorted(self.outbox.glob("*.eml")) if self.outbox.is_dir() else []


def _ids(text: str, kind: str) -> dict[str, str]:
    return {m.group(2).strip(): m.group(1)
            for m in re.finditer(rf"^\s+{kind}:\s+(\S+)\s+(.+)$", text, re.MULTILINE)}


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[DemoServer]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    env.update(CONSULTBOOK_DATABASE_URL=f"sqlite:///{tmp_path}/demo.db",
               CONSULTBOOK_OUTBOX_DIR=str(tmp_path / "outbox"))
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "demo", "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            if proc.poll() is not None:
                pytest.fail(f"consultbook demo exited: {log_path.read_text()}")
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"consultbook demo did not come up: {log_path.read_text()}")
            time.sleep(0.2)
        out = log_path.read_text()
        yield DemoServer(base, tmp_path / "outbox", log_path, _ids(out, "service"),
                         _ids(out, "expert"))
    finally:
        proc.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require_chromium()  # session fixtures are set up before the autouse check
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        b.close()
