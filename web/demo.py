"""`consultbook demo` playing Shopify's part (mounted only when ``config.demo`` is set).

Everything a newcomer needs to see the app work without a Shopify account:

* ``/demo`` — an index of the pages below.
* ``/demo/store`` — a storefront: products (one per service), a product page that embeds
  the calendar the way the theme app extension block does, a cart with Shopify's AJAX
  endpoints (``/cart/add.js``, ``/cart.js``), and a checkout that posts a correctly
  signed ``orders/paid`` webhook to ``/webhooks``.
* ``/demo/store/apps/consult/*`` — the App Proxy: signs each request exactly as Shopify
  does (``shop``, ``logged_in_customer_id``, ``path_prefix``, ``timestamp``,
  ``signature``), forwards it in-process to ``/proxy/*`` with the visitor's address in
  ``X-Forwarded-For``, and renders an ``application/liquid`` answer inside the store's
  layout as ``text/html`` (Shopify renders it inside the theme).
* ``/demo/admin`` — Shopify admin's frame around the embedded ``/admin`` page;
  ``/demo/session-token`` mints the App Bridge session tokens the page's shim asks for.
* ``/demo/shopify/admin/*`` — Shopify's Admin API as the app calls it (order tags,
  refunds, the token exchange), answered by the demo (:mod:`web.demo_shopify`): the demo's
  configuration points the Shopify admin origin here (:func:`engine.demo.demo_config`),
  so nothing the app does leaves the machine.
* ``/demo/outbox`` — what the app sent: the ``.eml`` files the outbox mailer wrote, and
  the Admin API calls it made to the demo's Shopify.

Calls are made in-process (a WSGI call into the same app) rather than over HTTP, so a
single-worker demo server can never wait on itself.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import sys
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import falcon
from sqlalchemy import select

from engine.bootstrap import Context
from engine.demo import (
    ADMIN_API_PREFIX,
    DEFAULT_PRICE,
    DEMO_CURRENCY,
    DEMO_PRODUCTS,
    DEMO_SHOP,
    sample_availability_url,
    seed,
)
from engine.domain.customer_time import customer_and_shop_time
from engine.services import catalog
from engine.services.shops import installed_shop
from engine.shopify import encode_session_token, sign_proxy, webhook_hmac
from engine.store.models import Claim
from web import demo_shopify
from web.demo_shopify import Ledger
from web.pages import (
    HTML,
    Raw,
    asset_version,
    catalog_locale,
    catalogs,
    esc,
    render,
    text_direction,
    valid_locale,
    variant_number,
)

STORE = "/demo/store"
PROXY_PREFIX = f"{STORE}/apps/consult"
CART_COOKIE = "consultbook_demo_cart"
RESERVED = {"shop", "logged_in_customer_id", "path_prefix", "timestamp", "signature"}
MAX_CART_LINES = 20


# ------------------------------------------------------------------------ in-process calls


def call_app(app: falcon.App, method: str, path: str, query: str = "", body: bytes = b"",
             headers: dict[str, str] | None = None,
             remote_addr: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """One request through ``app`` as a WSGI server would send it; (status, headers, body)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path,
        "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": remote_addr,
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
        "wsgi.run_once": False, "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        else:
            environ[f"HTTP_{key}"] = value
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Any:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = {k.lower(): v for k, v in response_headers}
        return lambda _data: None

    result: Iterable[bytes] = app(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], data


def _client_address(req: falcon.Request) -> str:
    return req.remote_addr or "127.0.0.1"


def _read_body(req: falcon.Request, limit: int = 1 << 20) -> bytes:
    return req.bounded_stream.read(limit)


def _form(req: falcon.Request) -> dict[str, str]:
    return dict(parse_qsl(_read_body(req).decode("utf-8", "replace"), keep_blank_values=True))


def _page(resp: falcon.Response, title: str, content: str, *, cart: int | None = None,
          status: str = falcon.HTTP_200) -> None:
    resp.status = status
    resp.content_type = HTML
    resp.cache_control = ["no-store"]
    nav_cart = "" if cart is None else f" ({cart})"
    resp.text = render("demo_store.html", title=title, content=Raw(content),
                       css=f"/static/demo.css?v={asset_version('demo.css')}",
                       cart_count=nav_cart)


# ------------------------------------------------------------------------ the catalogue


class Catalogue:
    """The demo shop's products: one per live service, priced from DEMO_PRODUCTS."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def shop(self) -> Any:
        with self.ctx.db.read() as session:
            return installed_shop(session, DEMO_SHOP)

    def products(self) -> list[dict[str, Any]]:
        shop = self.shop()
        out = []
        for s in catalog.list_services(self.ctx.db, shop.id):
            known = DEMO_PRODUCTS.get(s["title"], {})
            out.append({"service": s["id"], "title": s["title"],
                        "duration": s["duration_minutes"],
                        "variant_id": variant_number(s["variant_id"]),
                        "product_id": variant_number(s["product_id"]),
                        "price": known.get("price", DEFAULT_PRICE)})
        return out

    def by_variant(self, variant: str) -> dict[str, Any] | None:
        for p in self.products():
            if p["variant_id"] and p["variant_id"] == variant:
                return p
        return None


# ------------------------------------------------------------------------ the cart


def _cents(price: str) -> int:
    return int(Decimal(price) * 100)


def read_cart(req: falcon.Request) -> list[dict[str, Any]]:
    raw = req.cookies.get(CART_COOKIE, "")
    if not raw:
        return []
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        return []
    if not isinstance(data, list):
        return []
    return [line for line in data if isinstance(line, dict) and isinstance(
        line.get("variant_id"), str) and isinstance(line.get("properties"), dict)
        and isinstance(line.get("quantity"), int)][:MAX_CART_LINES]


def write_cart(resp: falcon.Response, lines: list[dict[str, Any]]) -> None:
    raw = base64.urlsafe_b64encode(json.dumps(lines, separators=(",", ":")).encode())
    resp.set_cookie(CART_COOKIE, raw.decode().rstrip("="), path=STORE, secure=False,
                    http_only=True, same_site="Lax")


def cart_document(cat: Catalogue, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The cart as Shopify's ``/cart.js`` shows it (prices in cents)."""
    items = []
    for i, line in enumerate(lines):
        product = cat.by_variant(line["variant_id"])
        if product is None:
            continue
        price = _cents(product["price"])
        items.append({"key": f"{line['variant_id']}:{i}", "id": int(line["variant_id"]),
                      "variant_id": int(line["variant_id"]),
                      "product_id": int(product["product_id"] or 0),
                      "title": product["title"], "quantity": line["quantity"],
                      "price": price, "line_price": price * line["quantity"],
                      "properties": line["properties"]})
    return {"items": items, "item_count": sum(i["quantity"] for i in items),
            "total_price": sum(i["line_price"] for i in items), "currency": DEMO_CURRENCY}


def _cart_error(resp: falcon.Response, status: int, description: str) -> None:
    resp.status = falcon.code_to_http_status(status)
    resp.media = {"status": status, "message": "Cart Error", "description": description}


class CartAdd:
    """``POST /cart/add.js`` with ``{"items": [{"id", "quantity", "properties"}]}``."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            doc = json.loads(_read_body(req) or b"null")
        except ValueError:
            return _cart_error(resp, 400, "The request body is not JSON.")
        items = doc.get("items") if isinstance(doc, dict) and "items" in doc else [doc]
        if not isinstance(items, list) or not items:
            return _cart_error(resp, 400, "Nothing to add.")
        lines = read_cart(req)
        added = []
        for item in items:
            if not isinstance(item, dict):
                return _cart_error(resp, 400, "Each item must be an object.")
            variant = str(item.get("id", ""))
            quantity = item.get("quantity", 1)
            props = item.get("properties") or {}
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 1:
                return _cart_error(resp, 422, "The quantity must be a positive number.")
            if not isinstance(props, dict) or not all(
                    isinstance(k, str) and isinstance(v, str | int | float)
                    for k, v in props.items()):
                return _cart_error(resp, 422, "Line item properties must be name/value pairs.")
            if self.cat.by_variant(variant) is None:
                return _cart_error(resp, 404, "Cannot find variant")
            props = {k: str(v) for k, v in props.items()}
            for line in lines:  # Shopify merges identical lines
                if line["variant_id"] == variant and line["properties"] == props:
                    line["quantity"] += quantity
                    break
            else:
                if len(lines) >= MAX_CART_LINES:
                    return _cart_error(resp, 422, "The cart is full.")
                lines.append({"variant_id": variant, "quantity": quantity,
                              "properties": props})
            added.append(variant)
        write_cart(resp, lines)
        doc_ = cart_document(self.cat, lines)
        resp.media = {"items": [i for i in doc_["items"] if str(i["variant_id"]) in added]}


class CartJson:
    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.cache_control = ["no-store"]
        resp.media = cart_document(self.cat, read_cart(req))


def _money(cents: int) -> str:
    return f"€{Decimal(cents) / 100:.2f}"


def held_times(ctx: Context, hold_ids: Iterable[str]) -> dict[str, str]:
    """Each hold's appointment in the customer's words: their time (the hold's ``tz``)
    with the shop's beside it. Holds of other shops, and unknown ids, are left out."""
    ids = sorted({h for h in hold_ids if isinstance(h, str) and 0 < len(h) <= 64
                  and h.isascii() and h.isprintable()})
    if not ids:
        return {}
    with ctx.db.read() as session:
        shop = installed_shop(session, DEMO_SHOP)
        rows = session.scalars(select(Claim).where(Claim.id.in_(ids),
                                                   Claim.shop_id == shop.id))
        return {c.id: customer_and_shop_time(c.start_at, c.end_at, c.customer_tz,
                                             shop.timezone) for c in rows}


class CartPage:
    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        cart = cart_document(self.cat, read_cart(req))
        times = held_times(self.cat.ctx, (str(i["properties"].get("_hold", ""))
                                          for i in cart["items"]))
        if not cart["items"]:
            content = (f'<h1>Your cart</h1><p>Your cart is empty.</p>'
                       f'<p><a href="{STORE}">Continue shopping</a></p>')
            return _page(resp, "Cart", content, cart=0)
        rows = []
        for i, item in enumerate(cart["items"]):
            # Shopify hides properties whose name starts with "_" from customers.
            props = "".join(f"<li><strong>{esc(k)}:</strong> {esc(v)}</li>"
                            for k, v in item["properties"].items() if not k.startswith("_"))
            when = times.get(str(item["properties"].get("_hold", "")))
            if when:
                props += f'<li class="held-time"><strong>When:</strong> {esc(when)}</li>'
            rows.append(
                f'<li class="line"><div><h2>{esc(item["title"])}</h2><ul class="props">{props}'
                f'</ul></div><div class="line-side"><span>{_money(item["line_price"])}</span>'
                f'<form method="post" action="{STORE}/cart/remove"><input type="hidden" '
                f'name="line" value="{i}"><button type="submit">Remove</button></form></div>'
                f'</li>')
        content = f"""<h1>Your cart</h1>
<ul class="lines">{''.join(rows)}</ul>
<p class="total">Total: <strong>{_money(cart["total_price"])}</strong></p>
<form class="checkout" method="post" action="{STORE}/checkout">
  <h2>Checkout (simulated)</h2>
  <p>Paying here sends Shopify's <code>orders/paid</code> webhook, signed with the demo
  API secret, to the app's <code>/webhooks</code>.</p>
  <div class="field"><label for="first_name">First name</label>
    <input id="first_name" name="first_name" autocomplete="given-name" required></div>
  <div class="field"><label for="last_name">Last name</label>
    <input id="last_name" name="last_name" autocomplete="family-name" required></div>
  <div class="field"><label for="email">Email</label>
    <input id="email" name="email" type="email" autocomplete="email" required></div>
  <button type="submit" class="primary">Pay {_money(cart["total_price"])} now</button>
</form>"""
        _page(resp, "Cart", content, cart=cart["item_count"])


class CartRemove:
    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        lines = read_cart(req)
        raw = _form(req).get("line", "")
        if raw.isdigit() and int(raw) < len(lines):
            del lines[int(raw)]
        write_cart(resp, lines)
        raise falcon.HTTPSeeOther(f"{STORE}/cart")


def order_payload(cart: dict[str, Any], customer: dict[str, str],
                  now: datetime) -> dict[str, Any]:
    """A paid order shaped like Shopify's order webhook JSON (the fields the app reads)."""
    order_id = 5_000_000_000_000 + secrets.randbelow(900_000_000_000)
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    total = sum(Decimal(i["line_price"]) for i in cart["items"]) / 100
    return {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "name": f"#{1000 + order_id % 9000}",
        "email": customer["email"],
        "contact_email": customer["email"],
        "created_at": stamp, "updated_at": stamp, "processed_at": stamp,
        "financial_status": "paid",
        "currency": DEMO_CURRENCY, "presentment_currency": DEMO_CURRENCY,
        "total_price": f"{total:.2f}",
        "customer": {"id": 6_000_000_000_000 + secrets.randbelow(900_000_000_000),
                     "first_name": customer["first_name"], "last_name": customer["last_name"],
                     "email": customer["email"]},
        "line_items": [{
            "id": 11_000_000_000_000 + secrets.randbelow(900_000_000_000),
            "variant_id": item["variant_id"], "product_id": item["product_id"],
            "title": item["title"], "name": item["title"], "quantity": item["quantity"],
            "price": f"{Decimal(item['price']) / 100:.2f}",
            "properties": [{"name": k, "value": v} for k, v in item["properties"].items()],
        } for item in cart["items"]],
    }


def deliver_webhook(app: falcon.App, ctx: Context, topic: str,
                    payload: dict[str, Any]) -> tuple[int, bytes]:
    """POST ``payload`` to ``/webhooks`` as Shopify delivers it (HMAC over the raw body)."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    status, _headers, answer = call_app(app, "POST", "/webhooks", body=body, headers={
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": DEMO_SHOP,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": ctx.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "X-Shopify-API-Version": "2025-10",
        "X-Shopify-Hmac-Sha256": webhook_hmac(body, ctx.config.api_secret),
    })
    return status, answer


class Checkout:
    def __init__(self, app: falcon.App, ctx: Context, cat: Catalogue, ledger: Ledger) -> None:
        self.app, self.ctx, self.cat, self.ledger = app, ctx, cat, ledger

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = _form(req)
        customer = {k: form.get(k, "").strip()[:200]
                    for k in ("first_name", "last_name", "email")}
        cart = cart_document(self.cat, read_cart(req))
        if not cart["items"]:
            raise falcon.HTTPSeeOther(f"{STORE}/cart")
        if not all(customer.values()) or "@" not in customer["email"]:
            return _page(resp, "Checkout", '<h1>Checkout</h1><p role="alert">Please give a '
                         f'name and an email address.</p><p><a href="{STORE}/cart">Back to the '
                         'cart</a></p>', cart=cart["item_count"], status=falcon.HTTP_400)
        order = order_payload(cart, customer, self.ctx.clock.now())
        # The demo's Shopify knows its orders (to tag and refund them), as Shopify does.
        self.ledger.record_order(order)
        status, answer = deliver_webhook(self.app, self.ctx, "orders/paid", order)
        write_cart(resp, [])
        items = "".join(
            f"<li>{esc(line['title'])}: "
            + ", ".join(f"{esc(p['name'])} {esc(p['value'])}" for p in line["properties"]
                        if not p["name"].startswith("_"))
            + "</li>" for line in order["line_items"])
        delivered = ("delivered" if 200 <= status < 300
                     else f"answered HTTP {status}: {esc(answer.decode('utf-8', 'replace')[:300])}")
        content = f"""<h1>Thank you, {esc(customer["first_name"])}!</h1>
<p class="order" data-order-id="{order["id"]}">Order {esc(order["name"])} is paid.</p>
<ul>{items}</ul>
<p>A confirmation email goes to <strong>{esc(customer["email"])}</strong>, and the app
tags the order in (the demo's) Shopify: see both in the <a href="/demo/outbox">outbox</a>.</p>
<p class="webhook" data-webhook-status="{status}">Webhook <code>orders/paid</code>: {delivered}.</p>
<p><a href="{STORE}">Back to the store</a></p>"""
        _page(resp, "Order paid", content, cart=0)


# ------------------------------------------------------------------------ storefront pages


class StoreHome:
    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        cards = "".join(
            f'<li class="card"><h2><a href="{STORE}/products/{esc(p["service"])}">'
            f'{esc(p["title"])}</a></h2><p>{p["duration"]} minutes with one of our experts.</p>'
            f'<p class="price">€{esc(p["price"])}</p></li>' for p in self.cat.products())
        content = (f'<h1>Consultations</h1><p>Talk to an expert, at a time that suits you.</p>'
                   f'<ul class="cards">{cards}</ul>')
        _page(resp, "Consultations", content, cart=len(read_cart(req)))


class ProductPage:
    """A product page with the calendar embedded as the theme app extension block does."""

    def __init__(self, ctx: Context, cat: Catalogue) -> None:
        self.ctx, self.cat = ctx, cat

    def on_get(self, req: falcon.Request, resp: falcon.Response, handle: str) -> None:
        product = next((p for p in self.cat.products() if p["service"] == handle), None)
        if product is None:
            return _page(resp, "Not found", "<h1>Not found</h1><p>There is no such product."
                         f' <a href="{STORE}">See all consultations</a>.</p>',
                         cart=len(read_cart(req)), status=falcon.HTTP_404)
        # ?block=off: the same page without the app's block (the Built-for-Shopify
        # storefront measure compares the two: benchmarks/bench_lighthouse.py).
        if str(req.get_param("block") or "") == "off":
            content = f"""<article class="product">
<h1>{esc(product["title"])}</h1>
<p class="price">€{esc(product["price"])}</p>
<p>Pick a time below. It is held for you while you check out.</p>
</article>"""
            return _page(resp, product["title"], content, cart=len(read_cart(req)))
        # The storefront's language, as Shopify's request.locale gives it to the block.
        catalog = catalog_locale(valid_locale(str(req.get_param("locale") or "")) or "en")
        content = f"""<article class="product">
<h1>{esc(product["title"])}</h1>
<p class="price">€{esc(product["price"])}</p>
<p>Pick a time below. It is held for you while you check out.</p>
<link rel="stylesheet" href="/static/booking.css?v={asset_version("booking.css")}">
<div class="consultbook" data-consultbook-booking data-api="{PROXY_PREFIX}"
     lang="{esc(catalog)}" dir="{text_direction(catalog)}"
     data-root="{STORE}/" data-service="{esc(product["service"])}"
     data-variant="{esc(product["variant_id"])}" data-locale="{esc(catalog)}"
     data-i18n="{esc(json.dumps(catalogs()[catalog], ensure_ascii=False))}"></div>
<script src="/static/booking.js?v={asset_version("booking.js")}" defer></script>
<p class="aside">The same calendar as a page of its own, through the App Proxy:
<a href="{PROXY_PREFIX}/book?service={quote(product["service"])}">{PROXY_PREFIX}/book</a></p>
</article>"""
        _page(resp, product["title"], content, cart=len(read_cart(req)))


# The demo theme's page title for each storefront page the App Proxy serves.
_PAGE_TITLES = {"book": "Book a consultation", "manage": "Your booking",
                "my-bookings": "Your bookings"}


class AppProxy:
    """Shopify's App Proxy: ``/demo/store/apps/consult/<path>`` → ``/proxy/<path>``, signed."""

    def __init__(self, app: falcon.App, ctx: Context, cat: Catalogue) -> None:
        self.app, self.ctx, self.cat = app, ctx, cat

    def _forward(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        pairs = [(k, v) for k, v in parse_qsl(req.query_string, keep_blank_values=True)
                 if k not in RESERVED]
        signed: dict[str, str | list[str]] = {}
        for k, v in pairs:
            have = signed.get(k)
            if have is None:
                signed[k] = v
            elif isinstance(have, list):
                have.append(v)
            else:
                signed[k] = [have, v]
        extra = {"shop": DEMO_SHOP, "logged_in_customer_id": "", "path_prefix": PROXY_PREFIX,
                 "timestamp": str(int(self.ctx.clock.now().timestamp()))}
        signature = sign_proxy({**signed, **extra}, self.ctx.config.api_secret)
        query = urlencode(pairs + list(extra.items()) + [("signature", signature)])
        body = _read_body(req) if req.method in ("POST", "PUT", "PATCH") else b""
        headers = {"X-Forwarded-For": _client_address(req)}
        for name in ("Content-Type", "Accept"):
            value = req.get_header(name)
            if value:
                headers[name] = value
        status, out_headers, data = call_app(self.app, req.method, f"/proxy/{path}", query,
                                             body, headers, remote_addr="127.0.0.1")
        content_type = out_headers.get("content-type", "")
        if content_type.startswith("application/liquid"):
            # Shopify renders Liquid inside the theme; the demo theme is a plain layout.
            return _page(resp, _PAGE_TITLES.get(path.split("/")[0], "Book a consultation"),
                         data.decode("utf-8"),
                         cart=len(read_cart(req)), status=falcon.code_to_http_status(status))
        resp.status = falcon.code_to_http_status(status)
        if content_type:
            resp.content_type = content_type
        for name in ("cache-control", "location", "retry-after"):
            if name in out_headers:
                resp.set_header(name, out_headers[name])
        resp.data = data

    on_get = on_post = on_delete = on_put = on_patch = _forward


# ------------------------------------------------------------------------ admin and outbox


class AdminFrame:
    """Shopify admin's chrome around the embedded app, which it loads in an iframe."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        host = base64.urlsafe_b64encode(
            f"admin.shopify.com/store/{DEMO_SHOP.split('.')[0]}".encode()).decode().rstrip("=")
        src = "/admin?" + urlencode({"embedded": "1", "shop": DEMO_SHOP, "host": host})
        resp.content_type = HTML
        resp.cache_control = ["no-store"]
        resp.text = render("demo_admin.html", shop=DEMO_SHOP, src=src,
                           css=f"/static/demo.css?v={asset_version('demo.css')}")


class SessionToken:
    """What App Bridge's ``shopify.idToken()`` gets from Shopify: a fresh session token."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        now = int(self.ctx.clock.now().timestamp())
        token = encode_session_token(DEMO_SHOP, api_key=self.ctx.config.api_key,
                                     api_secret=self.ctx.config.api_secret, now=now)
        resp.cache_control = ["no-store"]
        resp.media = {"token": token, "expires_at": now + 60}


def _outbox(ctx: Context) -> Path:
    return Path(ctx.config.outbox_dir)


def _messages(ctx: Context) -> list[tuple[Path, EmailMessage]]:
    folder = _outbox(ctx)
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.eml"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    out = []
    for path in files[:200]:
        with path.open("rb") as fh:
            out.append((path, BytesParser(policy=policy.default).parse(fh)))
    return out


def _api_calls(ledger: Ledger) -> str:
    """The Admin API calls the app made to the demo's Shopify, newest first."""
    calls = ledger.calls()
    if not calls:
        return ('<p class="empty">No Admin API calls yet. A paid booking tags its order; '
                'with auto-refund on, a line that cannot be honoured is refunded.</p>')
    rows = "".join(
        f'<tr data-operation="{esc(c.operation)}" data-order="{esc(c.order or "")}">'
        f'<td>{esc(c.at)}</td><td><code>{esc(c.operation)}</code></td>'
        f'<td>{esc(c.order_name or c.order or "")}</td><td>{esc(c.detail)}</td>'
        f'<td>{esc(c.outcome)}</td></tr>' for c in calls)
    return (f'<div class="table-scroll"><table class="calls"><caption>Newest first</caption>'
            f'<thead><tr><th scope="col">Time (UTC)</th><th scope="col">Call</th>'
            f'<th scope="col">Order</th><th scope="col">What</th>'
            f'<th scope="col">Result</th></tr></thead><tbody>{rows}</tbody></table></div>')


class Outbox:
    def __init__(self, ctx: Context, ledger: Ledger) -> None:
        self.ctx, self.ledger = ctx, ledger

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        rows = "".join(
            f'<tr><td>{esc(msg.get("Date", ""))}</td><td>{esc(msg.get("To", ""))}</td>'
            f'<td><a href="/demo/outbox/{quote(path.name)}">'
            f'{esc(msg.get("Subject", "(no subject)"))}</a></td></tr>'
            for path, msg in _messages(self.ctx))
        table = (f'<table class="outbox"><caption>Newest first</caption><thead><tr>'
                 f'<th scope="col">Date</th><th scope="col">To</th><th scope="col">Subject</th>'
                 f'</tr></thead><tbody>{rows}</tbody></table>' if rows
                 else '<p class="empty">No messages yet. Book and pay in the '
                      f'<a href="{STORE}">store</a>, then reload this page.</p>')
        content = (f'<h1>Outbox</h1><p>What the app sent, none of it beyond this machine.</p>'
                   f'<h2 id="mail">Mail</h2><p>The outbox mailer writes one <code>.eml</code> '
                   f'file per message into <code>{esc(_outbox(self.ctx).resolve())}</code>.'
                   f'</p>{table}'
                   f'<h2 id="shopify">Shopify Admin API calls</h2><p>The app calls Shopify\'s '
                   f'GraphQL Admin API to tag booked orders and to refund lines it could not '
                   f'honour. Here the demo answers at <code>{esc(ADMIN_API_PREFIX)}/admin/api'
                   f'</code>.</p>{_api_calls(self.ledger)}')
        _page(resp, "Outbox", content)


class OutboxMessage:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        # Only a name the listing shows: no path ever reaches the file system from the URL.
        found = next(((p, m) for p, m in _messages(self.ctx) if p.name == name), None)
        if found is None:
            return _page(resp, "Not found", '<h1>Not found</h1><p>No such message. '
                         '<a href="/demo/outbox">Back to the outbox</a></p>',
                         status=falcon.HTTP_404)
        path, msg = found
        if req.get_param("raw"):
            resp.content_type = "text/plain; charset=utf-8"
            resp.data = path.read_bytes()
            return
        headers = "".join(f"<dt>{esc(h)}</dt><dd>{esc(msg.get(h, ''))}</dd>"
                          for h in ("From", "To", "Subject", "Date") if msg.get(h))
        part = msg.get_body(preferencelist=("plain", "html"))
        text = part.get_content() if part is not None else ""
        attachments = "".join(
            f"<li>{esc(a.get_filename() or a.get_content_type())} "
            f"({esc(a.get_content_type())})</li>" for a in msg.iter_attachments())
        content = (f'<h1>{esc(msg.get("Subject", "(no subject)"))}</h1><dl class="headers">'
                   f'{headers}</dl><pre class="mail">{esc(text)}</pre>'
                   + (f"<h2>Attachments</h2><ul>{attachments}</ul>" if attachments else "")
                   + f'<p><a href="/demo/outbox/{quote(name)}?raw=1">Raw message</a> · '
                     '<a href="/demo/outbox">Back to the outbox</a></p>')
        _page(resp, "Message", content)


class Index:
    def __init__(self, cat: Catalogue) -> None:
        self.cat = cat

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        books = "".join(f'<li><a href="{STORE}/products/{esc(p["service"])}">Book: '
                        f'{esc(p["title"])}</a></li>' for p in self.cat.products())
        content = f"""<h1>consultbook demo</h1>
<p>This server plays Shopify's part: a storefront with the booking calendar, a cart and a
checkout that sends the <code>orders/paid</code> webhook, and Shopify admin around the
embedded app, and Shopify's Admin API, which the app calls to tag orders and refund them.
Nothing leaves your machine: mail and the Admin API calls land in the outbox.</p>
<ul class="index">
<li><a href="{STORE}">Storefront</a><ul>{books}</ul></li>
<li><a href="/demo/admin">Admin (embedded app)</a></li>
<li><a href="/demo/outbox">Outbox</a> (mail and Shopify Admin API calls)</li>
<li><a href="/demo/availability">A freshly signed availability URL</a></li>
</ul>"""
        _page(resp, "consultbook demo", content)


class DemoAvailability:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPFound(sample_availability_url(self.ctx, seed(self.ctx)))


def register(app: falcon.App, ctx: Context) -> None:
    cat = Catalogue(ctx)
    ledger = demo_shopify.register(app, ctx)
    app.add_route("/demo", Index(cat))
    app.add_route("/demo/availability", DemoAvailability(ctx))
    app.add_route(STORE, StoreHome(cat))
    app.add_route(f"{STORE}/products/{{handle}}", ProductPage(ctx, cat))
    app.add_route(f"{STORE}/cart", CartPage(cat))
    app.add_route(f"{STORE}/cart.js", CartJson(cat))
    app.add_route(f"{STORE}/cart/add.js", CartAdd(cat))
    app.add_route(f"{STORE}/cart/remove", CartRemove(cat))
    app.add_route(f"{STORE}/checkout", Checkout(app, ctx, cat, ledger))
    app.add_route(f"{PROXY_PREFIX}/{{path:path}}", AppProxy(app, ctx, cat))
    app.add_route("/demo/admin", AdminFrame(ctx))
    app.add_route("/demo/session-token", SessionToken(ctx))
    app.add_route("/demo/outbox", Outbox(ctx, ledger))
    app.add_route("/demo/outbox/{name}", OutboxMessage(ctx))
