"""`consultbook demo` keeps its promise that nothing leaves the machine.

The demo app runs over real HTTP on 127.0.0.1 (a threaded WSGI server in this process),
configured as `consultbook demo` configures it (:func:`engine.demo.demo_config`). A
customer in Los Angeles books through the simulated storefront and pays; the embedded
worker relays the outbox. Every socket this process opens is checked: anything but a
loopback address is refused and recorded, so a call to the real Shopify (or anywhere)
fails the test. The app's Admin API calls (``tagsAdd``; with auto-refund,
``suggestedRefund`` and ``refundCreate``) reach the demo's own Shopify
(:mod:`web.demo_shopify`) and show in the outbox viewer.

The last test runs the real ``consultbook demo`` command the same way, with the same
socket guard installed in the child process through ``sitecustomize``.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from zoneinfo import ZoneInfo

import pytest
import requests

from engine.bootstrap import Context, bootstrap
from engine.config import DEMO_API_KEY, DEMO_API_SECRET
from engine.demo import (
    ADMIN_API_PREFIX,
    DEMO_ACCESS_TOKEN,
    DEMO_PRODUCTS,
    DEMO_SHOP,
    DemoShop,
    demo_admin_origin,
    demo_config,
    seed,
)
from engine.domain.customer_time import customer_and_shop_time
from engine.embedded import EmbeddedWorker
from engine.shopify import encode_session_token
from engine.shopify.admin_api import AdminApi, AdminApiAuthError, AdminApiUserError
from engine.shopify.oauth import OAuthClient, OAuthGrantError
from tests.conftest import make_config
from web.app import create_app
from web.demo_shopify import Ledger

ROOT = Path(__file__).resolve().parent.parent
INTRO = "Intro call (30 min)"
LA = "America/Los_Angeles"


# ------------------------------------------------------------------ no network but loopback


def _loopback(host: object) -> bool:
    text = str(host).strip("[]")
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@dataclass
class Network:
    """Every connect and name lookup this process made, and the ones refused."""

    connects: list[tuple[str, int]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    seen = Network()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo, real_create = socket.getaddrinfo, socket.create_connection

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = address[0], address[1]
            seen.connects.append((str(host), int(port)))
            if not _loopback(host):
                seen.refused.append(f"connect {host}:{port}")
                raise OSError(errno.ENETUNREACH, f"test: no network beyond loopback ({host})")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host.decode() if isinstance(host, bytes)
                                              else host):
            seen.refused.append(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"test: no DNS ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if not _loopback(address[0]):
            seen.refused.append(f"create_connection {address[0]}:{address[1]}")
            raise OSError(errno.ENETUNREACH, f"test: no network beyond loopback ({address[0]})")
        return real_create(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


def test_the_guard_refuses_the_real_shopify(network: Network) -> None:
    """The guard itself can fail a test: the real Shopify is refused, loudly."""
    with pytest.raises(OSError):
        socket.create_connection((DEMO_SHOP, 443), timeout=1)
    with pytest.raises(requests.ConnectionError):
        requests.post(f"https://{DEMO_SHOP}/admin/api/2026-10/graphql.json", timeout=1)
    with pytest.raises(OSError), socket.socket() as s:
        s.connect(("192.0.2.1", 443))
    assert network.refused and all(DEMO_SHOP in r or "192.0.2.1" in r
                                   for r in network.refused)


# ------------------------------------------------------------------ the demo over HTTP


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Demo:
    base: str
    ctx: Context
    shop: DemoShop
    ledger: Ledger
    outbox: Path
    http: requests.Session = field(default_factory=requests.Session)

    def admin_token(self) -> str:
        return str(self.http.get(f"{self.base}/demo/session-token", timeout=10).json()["token"])

    def admin(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.http.request(method, f"{self.base}/admin/api{path}", json=body, timeout=10,
                                 headers={"Authorization": f"Bearer {self.admin_token()}"})


@pytest.fixture
def demo(db_url: str, tmp_path: Path, network: Network) -> Iterator[Demo]:
    server = _ThreadingServer(("127.0.0.1", 0), _QuietHandler)
    port = int(server.server_address[1])
    base = f"http://127.0.0.1:{port}"
    outbox = tmp_path / "outbox"
    # As `consultbook demo` does: its Shopify admin origin is the demo itself.
    config = demo_config(make_config(db_url, demo=True, outbox_dir=str(outbox),
                                     api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET,
                                     app_url=base), host="127.0.0.1", port=port)
    assert config.origins["shopify_admin"] == f"{base}{ADMIN_API_PREFIX}"
    ctx = bootstrap(config)
    shop = seed(ctx)
    server.set_app(create_app(ctx))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Demo(base, ctx, shop, Ledger(outbox), outbox)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        ctx.db.dispose()


def _relay_until_idle(worker: EmbeddedWorker, rounds: int = 10) -> None:
    """Run the embedded worker's relays (the customer lane and the Shopify lane) until
    neither finds work."""
    for _ in range(rounds):
        results: list[Any] = []
        for name in ("relay_outbox", "relay_shopify"):
            try:
                results.append(worker.run_job(name))
            except KeyError:  # a worker with one relay for both lanes
                continue
        if not any(r.outcomes for r in results):
            return


def _book_and_pay(demo: Demo, tz: str, start: str | None = None,
                  properties: dict[str, str] | None = None) -> tuple[str, dict[str, str], str]:
    """Hold a slot through the storefront's App Proxy (unless ``properties`` of an earlier
    hold are given), put it in the cart, pay. Returns (order id, line properties, cart page)."""
    service = demo.shop.services[INTRO]
    anna = demo.shop.experts["Anna Berger"]
    proxy = f"{demo.base}/demo/store/apps/consult"
    if properties is None:
        if start is None:
            day = (datetime.now(UTC).astimezone(ZoneInfo("Europe/Berlin")).date()
                   + timedelta(days=1))
            r = demo.http.get(f"{proxy}/availability", timeout=10, params={
                "service": service, "expert": anna, "start": day.isoformat(), "days": "14",
                "tz": tz})
            assert r.status_code == 200, r.text
            start = r.json()["slots"][0]["start"]
        r = demo.http.post(f"{proxy}/holds", timeout=10, json={
            "service": service, "expert": anna, "start": start, "tz": tz})
        assert r.status_code == 201, r.text
        properties = dict(r.json()["line_item_properties"])
    variant = int(DEMO_PRODUCTS[INTRO]["variant_id"])
    r = demo.http.post(f"{demo.base}/demo/store/cart/add.js", timeout=10, json={
        "items": [{"id": variant, "quantity": 1, "properties": properties}]})
    assert r.status_code == 200, r.text
    cart = demo.http.get(f"{demo.base}/demo/store/cart", timeout=10).text
    r = demo.http.post(f"{demo.base}/demo/store/checkout", timeout=10, data={
        "first_name": "Lena", "last_name": "Lopez", "email": "lena@example.com"})
    assert r.status_code == 200, r.text
    assert 'data-webhook-status="200"' in r.text, r.text
    match = re.search(r'data-order-id="(\d+)"', r.text)
    assert match is not None
    return match.group(1), properties, cart


def test_a_paid_booking_tags_its_order_in_the_demos_own_shopify(
        demo: Demo, network: Network) -> None:
    order_id, props, cart = _book_and_pay(demo, LA)
    hold = props["_hold"]

    # The cart tells the customer their time beside the shop's.
    with demo.ctx.db.read() as session:
        from engine.store.models import Claim

        claim = session.get(Claim, hold)
        assert claim is not None and claim.customer_tz == LA
        words = customer_and_shop_time(claim.start_at, claim.end_at, LA, "Europe/Berlin")
    assert f"<strong>When:</strong> {html.escape(words)}" in cart
    assert "the shop&#x27;s time" in cart and f"({LA})" in cart

    worker = EmbeddedWorker(demo.ctx.config)
    try:
        _relay_until_idle(worker)
    finally:
        worker.runtime.close()

    # The tag call went over HTTP to the demo's Admin API, with the shop's token.
    order = demo.ledger.order(order_id)
    assert order is not None
    assert order["tags"] == ["consultbook", f"consultbook-{hold}"]
    [tagged] = [c for c in demo.ledger.calls() if c.operation == "tagsAdd"]
    assert tagged.order == order_id and tagged.outcome == "ok"
    assert tagged.order_name == order["name"]
    # No customer data is kept by the demo's Shopify.
    assert "lena" not in json.dumps(order).lower()

    # The outbox viewer shows what was sent: the confirmation mail and the tag call.
    page = demo.http.get(f"{demo.base}/demo/outbox", timeout=10).text
    assert "lena@example.com" in page
    assert f'data-operation="tagsAdd" data-order="{order_id}"' in page
    assert html.escape(order["name"]) in page and f"consultbook-{hold}" in page
    [mail] = [p for p in demo.outbox.glob("*.eml") if b"lena@example.com" in p.read_bytes()
              and b"Booking confirmed" in p.read_bytes()]
    assert mail.is_file()

    # Nothing but loopback, ever; and the calls did go over the network (to loopback).
    assert network.refused == []
    assert network.connects and all(_loopback(h) for h, _ in network.connects)


def test_auto_refund_refunds_in_the_demos_own_shopify(demo: Demo, network: Network) -> None:
    settings = demo.admin("GET", "/settings").json()
    settings = settings.get("settings", settings)
    settings["auto_refund"] = True
    r = demo.admin("PUT", "/settings", settings)
    assert r.status_code == 200, r.text

    first, props, _ = _book_and_pay(demo, LA)
    # The same hold bought again in another order cannot be honoured: refunded.
    second, _, _ = _book_and_pay(demo, LA, properties=props)
    worker = EmbeddedWorker(demo.ctx.config)
    try:
        _relay_until_idle(worker)
    finally:
        worker.runtime.close()

    order = demo.ledger.order(second)
    assert order is not None
    [refund] = order["refunds"]
    assert refund["amount"] == DEMO_PRODUCTS[INTRO]["price"] and refund["currency"] == "EUR"
    assert refund["key"] == f"consultbook-refund-{second}-{order['line_items'][0]['id']}"
    assert (demo.ledger.order(first) or {}).get("refunds") == []
    [logged] = demo.admin("GET", "/refunds").json()["refunds"]
    assert logged["order_id"] == second
    assert logged["shopify_refund"]["status"] == "refunded"
    assert logged["shopify_refund"]["id"] == refund["id"]

    page = demo.http.get(f"{demo.base}/demo/outbox", timeout=10).text
    for operation in ("suggestedRefund", "refundCreate"):
        assert f'data-operation="{operation}" data-order="{second}"' in page
    assert "refunded 49.00 EUR" in page
    assert network.refused == []


# ------------------------------------------------------------------ the fake answers like Shopify


def test_the_demos_admin_api_checks_the_token_and_refuses_what_shopify_refuses(
        demo: Demo, network: Network) -> None:
    origin = demo.ctx.config.origins["shopify_admin"]
    with AdminApi(DEMO_SHOP, "shpat_wrong", origin=origin, max_attempts=1) as api, \
            pytest.raises(AdminApiAuthError):
        api.tag_order("5000000000001", ["consultbook"])
    assert [c.outcome for c in demo.ledger.calls()] == ["401"]

    with AdminApi(DEMO_SHOP, DEMO_ACCESS_TOKEN, origin=origin, max_attempts=1) as api:
        assert api.shop_timezone() == "Europe/Berlin"
        with pytest.raises(AdminApiUserError, match="Order does not exist"):
            api.tag_order("5000000000001", ["consultbook"])
        with pytest.raises(Exception, match="does not answer"):
            api.graphql("query { products(first: 1) { nodes { id } } }")
    r = requests.post(f"{origin}/admin/api/1999-13/graphql.json", timeout=5, json={},
                      headers={"X-Shopify-Access-Token": DEMO_ACCESS_TOKEN})
    assert r.status_code == 404
    r = requests.post(f"{origin}/admin/api/2026-10/graphql.json", timeout=5, data=b"{",
                      headers={"X-Shopify-Access-Token": DEMO_ACCESS_TOKEN})
    assert r.status_code == 400
    assert network.refused == []


def test_refunds_are_idempotent_on_their_key_and_bounded_by_the_order(
        demo: Demo, network: Network) -> None:
    order = {"id": 5000000000007, "name": "#1007", "currency": "EUR",
             "financial_status": "paid",
             "line_items": [{"id": 11000000000001, "title": INTRO, "quantity": 1,
                             "price": "49.00"}]}
    demo.ledger.record_order(order)
    origin = demo.ctx.config.origins["shopify_admin"]
    line = [{"line_item_id": "11000000000001", "quantity": 1}]
    with AdminApi(DEMO_SHOP, DEMO_ACCESS_TOKEN, origin=origin, max_attempts=1) as api:
        one = api.refund_line_items("5000000000007", line, "EUR", idempotency_key="k-1")
        again = api.refund_line_items("5000000000007", line, "EUR", idempotency_key="k-1")
        assert one == again and one["amount"] == "49.00" and one["currency"] == "EUR"
        with pytest.raises(AdminApiUserError, match="currency"):
            api.refund_line_items("5000000000007", line, "USD", idempotency_key="k-2")
        with pytest.raises(Exception, match="Line item does not exist"):
            api.refund_line_items("5000000000007", [{"line_item_id": "1", "quantity": 1}],
                                  "EUR", idempotency_key="k-3")
    assert len((demo.ledger.order("5000000000007") or {})["refunds"]) == 1
    assert network.refused == []


def test_the_demos_token_endpoint_exchanges_only_the_demo_shops_session_token(
        demo: Demo) -> None:
    origin = demo.ctx.config.origins["shopify_admin"]
    now = int(time.time())
    client = OAuthClient(DEMO_API_KEY, DEMO_API_SECRET, origin=origin)
    token = encode_session_token(DEMO_SHOP, api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET,
                                 now=now)
    assert client.exchange_session_token(DEMO_SHOP, token).access_token == DEMO_ACCESS_TOKEN
    other = encode_session_token("other.myshopify.com", api_key=DEMO_API_KEY,
                                 api_secret=DEMO_API_SECRET, now=now)
    with pytest.raises(OAuthGrantError):
        client.exchange_session_token(DEMO_SHOP, other)
    with pytest.raises(OAuthGrantError):
        OAuthClient(DEMO_API_KEY, "wrong", origin=origin).exchange_session_token(DEMO_SHOP,
                                                                                 token)
    with pytest.raises(OAuthGrantError):
        client.refresh(DEMO_SHOP, "anything")


def test_the_demo_admin_origin_stays_on_this_machine() -> None:
    assert demo_admin_origin("0.0.0.0", 8000) == "http://127.0.0.1:8000/demo/shopify"  # noqa: S104
    assert demo_admin_origin("::", 8000) == "http://127.0.0.1:8000/demo/shopify"
    assert demo_admin_origin("::1", 8000) == "http://[::1]:8000/demo/shopify"
    assert demo_admin_origin("127.0.0.1", 9) == "http://127.0.0.1:9/demo/shopify"
    # An origin the operator chose is kept.
    config = make_config("sqlite://", demo=True, origins={"shopify_admin": "http://127.0.0.1:1"})
    assert demo_config(config, host="0.0.0.0", port=8000) is config  # noqa: S104


# ------------------------------------------------------------------ the real command

GUARD = textwrap.dedent('''
    """Installed by tests/test_demo_offline.py: no socket beyond loopback in this process."""
    import ipaddress, os, socket

    _LOG = os.environ["CONSULTBOOK_TEST_NETWORK_LOG"]

    def _loopback(host):
        text = str(host).strip("[]")
        if text == "localhost":
            return True
        try:
            return ipaddress.ip_address(text.split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    def _refuse(what):
        with open(_LOG, "a") as fh:
            fh.write(what + "\\n")
        raise OSError(101, "test: no network beyond loopback (" + what + ")")

    _connect, _connect_ex, _getaddrinfo = (socket.socket.connect, socket.socket.connect_ex,
                                           socket.getaddrinfo)

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            _refuse("connect %s:%s" % (address[0], address[1]))
        return _connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            _refuse("connect %s:%s" % (address[0], address[1]))
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _loopback(host.decode() if isinstance(host, bytes)
                                              else host):
            _refuse("resolve %s" % (host,))
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_consultbook_demo_itself_never_calls_the_real_shopify(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(GUARD)
    network_log = tmp_path / "network.log"
    network_log.touch()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULTBOOK_", "SHOPIFY_"))}
    env.update(CONSULTBOOK_DATABASE_URL=f"sqlite:///{tmp_path}/demo.db",
               CONSULTBOOK_OUTBOX_DIR=str(tmp_path / "outbox"),
               CONSULTBOOK_TEST_NETWORK_LOG=str(network_log),
               PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "demo", "--port",
                                 str(port)], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        services = {m.group(2).strip(): m.group(1) for m in re.finditer(
            r"^\s+service:\s+(\S+)\s+(.+)$", log_path.read_text(), re.MULTILINE)}
        experts = {m.group(2).strip(): m.group(1) for m in re.finditer(
            r"^\s+expert:\s+(\S+)\s+(.+)$", log_path.read_text(), re.MULTILINE)}
        shop = DemoShop(shop=None, services=services, experts=experts)  # type: ignore[arg-type]
        demo = Demo(base, None, shop, Ledger(tmp_path / "outbox"),  # type: ignore[arg-type]
                    tmp_path / "outbox")
        order_id, _, _ = _book_and_pay(demo, LA)
        # The embedded worker tags the order: in the demo's own Shopify, shown in the viewer.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page = requests.get(f"{base}/demo/outbox", timeout=10).text
            if f'data-operation="tagsAdd" data-order="{order_id}"' in page:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the order was never tagged in the demo's Shopify; "
                                 f"refused: {network_log.read_text()!r}\n{log_path.read_text()}")
        assert (demo.ledger.order(order_id) or {}).get("tags", [])[:1] == ["consultbook"]
        assert network_log.read_text() == ""
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # gunicorn's quick shutdown
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
