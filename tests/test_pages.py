"""The HTML faces over HTTP (no browser): the storefront calendar page behind the App Proxy,
the embedded admin page, static assets, the theme app extension, and the demo's Shopify
stand-ins (App Proxy relay, cart, checkout webhook, session tokens, outbox viewer)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import pytest

from engine.bootstrap import Context, bootstrap
from engine.demo import DEMO_SHOP, DemoShop, seed
from engine.services.shops import ShopRef
from engine.shopify import decode_session_token, verify_webhook
from tests.conftest import API_KEY, API_SECRET, Admin, make_config, proxy_query
from web.app import create_app
from web.demo import call_app, deliver_webhook, order_payload

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ the calendar page


@pytest.fixture
def service(admin: Admin) -> dict[str, Any]:
    svc = admin("POST", "/services", {"title": "Intro {{ shop.name }} <b>call</b>",
                                      "duration_minutes": 30,
                                      "variant_id": "gid://shopify/ProductVariant/808950810"}).json
    admin("POST", "/experts", {"name": "Anna", "services": [svc["id"]],
                               "timezone": "Europe/Berlin"})
    return svc


def test_book_page_is_liquid_through_the_app_proxy(client: falcon.testing.TestClient,
                                                   ctx: Context, shop: ShopRef,
                                                   service: dict[str, Any]) -> None:
    r = client.simulate_get("/proxy/book", query_string=proxy_query(
        ctx, shop.domain, {"service": service["id"]}))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/liquid")
    body = r.text
    assert f'data-service="{service["id"]}"' in body
    assert 'data-api="/apps/consult"' in body and 'data-root="/"' in body
    assert 'data-variant="808950810"' in body  # the number /cart/add.js wants
    assert 'data-shop-timezone="Europe/Berlin"' in body
    # The storefront's locale picks the catalog (Liquid reads request.locale); that
    # `case` and the locale are the only Liquid in the answer.
    assert "request.locale.iso_code" in body and "{%- when 'de' -%}" in body
    ours = re.sub(r"\{%- (assign cb_lang = request\.locale\.iso_code \| split: '-' \| first \| "
                  r"downcase|case cb_lang|when '[a-z]+'|else|endcase) -%\}"
                  r"|\{\{ request\.locale\.iso_code \| escape \}\}", "", body)
    # A merchant's title can never become Liquid or markup in the shop's theme.
    assert "{{" not in ours and "{%" not in ours and "<b>" not in body
    assert "Intro &#123;&#123; shop.name &#125;&#125; &lt;b&gt;call&lt;/b&gt;" in body
    # Assets come from the app's own origin, never from a third-party CDN.
    srcs = re.findall(r'(?:src|href)="([^"]+)"', body)
    assert srcs and all(s.startswith(ctx.config.app_url + "/static/") for s in srcs)


def test_book_page_in_the_asked_locale(client: falcon.testing.TestClient, ctx: Context,
                                       shop: ShopRef, service: dict[str, Any]) -> None:
    def page(locale: str) -> str:
        r = client.simulate_get("/proxy/book", query_string=proxy_query(
            ctx, shop.domain, {"service": service["id"], "locale": locale}))
        assert r.status_code == 200
        return r.text

    body = page("de-AT")  # the language's catalog, the locale as asked
    assert 'data-locale="de-AT"' in body and 'lang="de" dir="ltr"' in body
    assert "Buchen: Intro &#123;&#123; shop.name &#125;&#125; &lt;b&gt;call&lt;/b&gt;" in body
    assert "&quot;your_zone&quot;:&quot;Ihre Zeitzone&quot;" in body
    assert "{%" not in body and "{{" not in body
    assert 'lang="ar" dir="rtl"' in page("ar")
    assert 'lang="pt-BR"' in page("pt")
    body = page("he")  # no Hebrew catalog: English, left to right
    assert 'lang="en" dir="ltr"' in body and 'data-locale="he"' in body
    # Not a locale: the storefront's own decides, as without the parameter.
    assert 'data-locale="{{ request.locale.iso_code | escape }}"' in page("x" * 30)


def test_book_page_needs_a_signature(client: falcon.testing.TestClient, shop: ShopRef,
                                     service: dict[str, Any]) -> None:
    r = client.simulate_get("/proxy/book", params={"service": service["id"],
                                                   "shop": shop.domain})
    assert r.status_code == 401
    assert r.json["error"]["code"] == "invalid_signature"


def test_book_page_unknown_or_missing_service(client: falcon.testing.TestClient, ctx: Context,
                                              shop: ShopRef, other_shop: ShopRef,
                                              admin: Admin) -> None:
    theirs = admin("POST", "/services", {"title": "Ours"}).json["id"]
    r = client.simulate_get("/proxy/book", query_string=proxy_query(
        ctx, other_shop.domain, {"service": theirs}))
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/liquid")
    assert "not available" in r.text
    r = client.simulate_get("/proxy/book", query_string=proxy_query(ctx, shop.domain, {}))
    assert r.status_code == 400


def test_book_config_as_json_for_the_theme_block(client: falcon.testing.TestClient,
                                                 ctx: Context, shop: ShopRef,
                                                 service: dict[str, Any]) -> None:
    r = client.simulate_get("/proxy/book", query_string=proxy_query(
        ctx, shop.domain, {"service": service["id"], "format": "json"}))
    assert r.status_code == 200
    assert r.json["service"]["id"] == service["id"]
    assert r.json["variant_id"] == "808950810"
    assert r.json["shop_timezone"] == "Europe/Berlin"
    assert [e["name"] for e in r.json["experts"]] == ["Anna"]


# ------------------------------------------------------------------ admin page and assets


def test_admin_page_loads_app_bridge_in_production(client: falcon.testing.TestClient,
                                                   ctx: Context) -> None:
    r = client.simulate_get("/admin", params={"shop": "alpha.myshopify.com", "host": "x"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in r.text
    scripts = re.findall(r'<script src="([^"]+)"', r.text)
    # App Bridge first (Shopify requires it), then only our own script.
    assert scripts[0] == "https://cdn.shopify.com/shopifycloud/app-bridge.js"
    assert all(s.startswith("/static/") for s in scripts[1:])
    assert "demo-app-bridge" not in r.text
    assert r.headers["content-security-policy"] == (
        "frame-ancestors https://alpha.myshopify.com https://admin.shopify.com;")
    # A forged shop never widens who may frame the page.
    r = client.simulate_get("/admin", params={"shop": "evil.com https://evil.com"})
    assert r.headers["content-security-policy"] == "frame-ancestors https://admin.shopify.com;"


@pytest.mark.parametrize("name", ["booking.js", "booking.css", "admin.js", "admin.css",
                                  "demo-app-bridge.js", "demo.css"])
def test_static_assets_are_served(client: falcon.testing.TestClient, name: str) -> None:
    r = client.simulate_get(f"/static/{name}")
    assert r.status_code == 200
    assert r.content == (ROOT / "web/static" / name).read_bytes()
    # Vanilla: nothing is fetched from anywhere but the page's own origin.
    assert "cdn." not in r.text and "//unpkg" not in r.text


def test_static_route_refuses_to_leave_its_folder(client: falcon.testing.TestClient) -> None:
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        assert client.simulate_get(path).status_code == 404


def test_demo_routes_are_absent_outside_demo(client: falcon.testing.TestClient) -> None:
    for path in ("/demo", "/demo/store", "/demo/session-token", "/demo/outbox"):
        assert client.simulate_get(path).status_code == 404, path


# ------------------------------------------------------------------ theme app extension

EXTENSION = ROOT / "extensions/consultbook-booking"


def test_theme_extension_has_the_shopify_cli_layout() -> None:
    toml = (EXTENSION / "shopify.extension.toml").read_text()
    assert re.search(r'^type = "theme"$', toml, re.MULTILINE)
    block = (EXTENSION / "blocks/booking.liquid").read_text()
    schema = json.loads(block.split("{% schema %}")[1].split("{% endschema %}")[0])
    assert schema["target"] == "section"
    for asset in (schema["javascript"], schema["stylesheet"]):
        assert (EXTENSION / "assets" / asset).is_file()
    assert "data-consultbook-booking" in block and "/apps/consult" in block
    locale = json.loads((EXTENSION / "locales/en.default.json").read_text())
    for key in re.findall(r"'consultbook\.(\w+)' \| t", block):
        assert key in locale["consultbook"], key


def test_theme_extension_ships_the_same_calendar() -> None:
    for ours, theirs in (("booking.js", "consultbook-booking.js"),
                         ("booking.css", "consultbook-booking.css")):
        assert (ROOT / "web/static" / ours).read_bytes() == (
            EXTENSION / "assets" / theirs).read_bytes(), \
            "run python3 scripts/sync_extension_assets.py"


# ------------------------------------------------------------------ the demo as Shopify


@pytest.fixture
def demo_ctx(sqlite_url: str, tmp_path: Path) -> Iterator[Context]:
    context = bootstrap(make_config(sqlite_url, demo=True, outbox_dir=str(tmp_path / "outbox"),
                                    app_url="http://127.0.0.1:9"))
    yield context
    context.db.dispose()


@pytest.fixture
def demo(demo_ctx: Context) -> DemoShop:
    return seed(demo_ctx)


@pytest.fixture
def demo_client(demo_ctx: Context, demo: DemoShop) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(demo_ctx))


def test_demo_pages_render(demo_client: falcon.testing.TestClient, demo: DemoShop) -> None:
    for path in ["/demo", "/demo/store", "/demo/store/cart", "/demo/admin", "/demo/outbox",
                 *(f"/demo/store/products/{sid}" for sid in demo.services.values())]:
        r = demo_client.simulate_get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html"), path
    assert demo_client.simulate_get("/demo/store/products/nope").status_code == 404


def test_demo_admin_uses_the_local_app_bridge(demo_client: falcon.testing.TestClient,
                                              demo_ctx: Context) -> None:
    r = demo_client.simulate_get("/admin")
    assert "cdn.shopify.com" not in r.text
    assert '<script src="/static/demo-app-bridge.js' in r.text
    token = demo_client.simulate_get("/demo/session-token").json["token"]
    claims = decode_session_token(token, api_key=API_KEY, api_secret=API_SECRET,
                                  now=int(demo_ctx.clock.now().timestamp()))
    assert claims.shop == DEMO_SHOP
    r = demo_client.simulate_get("/admin/api/services",
                                 headers={"Authorization": f"Bearer {token}"})
    assert len(r.json["services"]) == 3  # two one-to-one services and the workshop


def test_demo_app_proxy_signs_for_the_demo_shop_only(demo_client: falcon.testing.TestClient,
                                                     demo: DemoShop) -> None:
    service = demo.services["Intro call (30 min)"]
    # A visitor cannot pick the shop: the relay overwrites every parameter Shopify signs.
    r = demo_client.simulate_get("/demo/store/apps/consult/availability", query_string=(
        f"service={service}&start=2030-01-07&days=2&shop=evil.myshopify.com&signature=x"))
    assert r.status_code == 200, r.text
    assert r.json["shop_timezone"] == "Europe/Berlin"
    # Liquid comes back rendered inside the store's layout, as HTML.
    r = demo_client.simulate_get("/demo/store/apps/consult/book", params={"service": service})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "Consultbook Demo Store" in r.text
    assert 'data-api="/demo/store/apps/consult"' in r.text
    assert 'data-root="/demo/store/"' in r.text
    # Errors pass through with their status and JSON body.
    r = demo_client.simulate_get("/demo/store/apps/consult/availability")
    assert r.status_code == 400
    assert r.json["error"]["code"] == "invalid_request"


def test_demo_cart_follows_shopify_ajax_api(demo_client: falcon.testing.TestClient,
                                            demo: DemoShop) -> None:
    props = {"_hold": "hold_x", "Appointment": "Mon 7 Jan 2030, 09:00", "Expert": "Anna"}
    r = demo_client.simulate_post("/demo/store/cart/add.js", json={
        "items": [{"id": 4100000000001, "quantity": 1, "properties": props}]})
    assert r.status_code == 200
    assert r.json["items"][0]["properties"] == props
    cookie = r.cookies["consultbook_demo_cart"].value
    cart = demo_client.simulate_get("/demo/store/cart.js",
                                    headers={"Cookie": f"consultbook_demo_cart={cookie}"}).json
    assert cart["item_count"] == 1 and cart["total_price"] == 4900
    page = demo_client.simulate_get("/demo/store/cart",
                                    headers={"Cookie": f"consultbook_demo_cart={cookie}"})
    assert "Anna" in page.text and "hold_x" not in page.text
    r = demo_client.simulate_post("/demo/store/cart/add.js", json={"items": [{"id": 1}]})
    assert r.status_code == 404
    assert r.json["description"] == "Cannot find variant"
    garbage = demo_client.simulate_get("/demo/store/cart.js",
                                       headers={"Cookie": "consultbook_demo_cart=%%%"})
    assert garbage.json["items"] == []


def test_demo_checkout_delivers_a_signed_orders_paid_webhook(demo_ctx: Context) -> None:
    seen: dict[str, Any] = {}

    class Capture:
        def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
            seen["body"] = req.bounded_stream.read()
            seen["headers"] = req.headers
            resp.media = {"status": "processed"}

    app = falcon.App()
    app.add_route("/webhooks", Capture())
    cart = {"items": [{"variant_id": 4100000000001, "product_id": 7100000000001,
                       "title": "Intro call", "quantity": 1, "price": 4900, "line_price": 4900,
                       "properties": {"_hold": "hold_x", "Expert": "Anna"}}]}
    order = order_payload(cart, {"first_name": "Lena", "last_name": "Lopez",
                                 "email": "lena@example.com"}, demo_ctx.clock.now())
    status, _ = deliver_webhook(app, demo_ctx, "orders/paid", order)
    assert status == 200
    verify_webhook(seen["body"], seen["headers"]["X-SHOPIFY-HMAC-SHA256"], API_SECRET)
    assert seen["headers"]["X-SHOPIFY-TOPIC"] == "orders/paid"
    assert seen["headers"]["X-SHOPIFY-SHOP-DOMAIN"] == DEMO_SHOP
    assert seen["headers"]["X-SHOPIFY-WEBHOOK-ID"]
    body = json.loads(seen["body"])
    assert body["financial_status"] == "paid" and body["currency"] == "EUR"
    assert body["customer"]["email"] == "lena@example.com"
    [line] = body["line_items"]
    assert line["price"] == "49.00" and line["quantity"] == 1
    assert {"name": "_hold", "value": "hold_x"} in line["properties"]


def test_call_app_is_an_in_process_wsgi_request(demo_ctx: Context) -> None:
    status, headers, body = call_app(create_app(demo_ctx), "GET", "/healthz")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["status"] == "ok"


def test_demo_outbox_lists_and_shows_messages(demo_client: falcon.testing.TestClient,
                                              demo_ctx: Context) -> None:
    outbox = Path(demo_ctx.config.outbox_dir)
    outbox.mkdir()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.com", "lena@example.com", "Booked"
    msg.set_content("See you <soon>.")
    msg.add_attachment(b"BEGIN:VCALENDAR", maintype="text", subtype="calendar",
                       filename="invite.ics")
    (outbox / "0001.eml").write_bytes(msg.as_bytes())
    (outbox / "notes.txt").write_text("not mail")
    listing = demo_client.simulate_get("/demo/outbox").text
    assert "lena@example.com" in listing and "/demo/outbox/0001.eml" in listing
    assert "notes.txt" not in listing
    page = demo_client.simulate_get("/demo/outbox/0001.eml").text
    assert "See you &lt;soon&gt;." in page and "invite.ics" in page
    raw = demo_client.simulate_get("/demo/outbox/0001.eml", params={"raw": "1"})
    assert raw.headers["content-type"].startswith("text/plain")
    for name in ("notes.txt", "..%2F..%2Fetc%2Fpasswd", "missing.eml"):
        assert demo_client.simulate_get(f"/demo/outbox/{name}").status_code == 404



def test_the_demo_product_page_speaks_the_asked_locale(
        demo_client: falcon.testing.TestClient, demo: DemoShop) -> None:
    service = next(iter(demo.services.values()))
    r = demo_client.simulate_get(f"/demo/store/products/{service}", params={"locale": "de"})
    assert r.status_code == 200
    assert 'data-locale="de"' in r.text and 'lang="de"' in r.text
    assert "Nächster Monat" in r.text  # the German catalog is inlined
    arabic = demo_client.simulate_get(f"/demo/store/products/{service}",
                                      params={"locale": "ar"})
    assert 'dir="rtl"' in arabic.text
    english = demo_client.simulate_get(f"/demo/store/products/{service}")
    assert 'data-locale="en"' in english.text and 'dir="ltr"' in english.text
