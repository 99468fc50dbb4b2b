"""The two HTML faces: the storefront booking calendar and the embedded admin page.

* ``GET /proxy/book?service=ID`` (App Proxy, signed): the calendar, answered as
  ``application/liquid`` so Shopify renders it inside the shop's theme. The markup is a
  root element whose ``data-*`` attributes configure ``static/booking.js``; the script
  talks to the API through the same proxy prefix the page was served under (Shopify
  signs those calls). ``&format=json`` answers the same configuration as JSON, for the
  theme app extension block, which renders its own root element on a product page.
* ``GET /admin``: the embedded admin page. In production it loads App Bridge from
  Shopify's CDN (the one external script, which Shopify requires); under ``demo`` a
  local shim mints session tokens through a demo-only endpoint instead.
* ``/static/*``: the scripts and styles, served by us (no runtime CDN on the storefront).

Templates are plain ``string.Template`` files in ``web/templates``; every value that goes
into them is escaped for HTML *and* for Liquid (``{``/``}`` become character references),
so a merchant's service title can never turn into Liquid code in the shop's theme.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

import falcon

from engine.bootstrap import Context
from engine.errors import NotFound, ValidationError
from engine.services import catalog
from engine.shopify import valid_shop_domain
from web.common import query_params

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"

LIQUID = "application/liquid; charset=utf-8"
HTML = "text/html; charset=utf-8"
APP_BRIDGE_URL = "https://cdn.shopify.com/shopifycloud/app-bridge.js"
DEFAULT_PROXY_PREFIX = "/apps/consult"
# What Shopify accepts as an App Proxy prefix (apps|a|community|tools + subpath), possibly
# under a storefront path (the demo serves its storefront under /demo/store).
_PREFIX = re.compile(r"(/[A-Za-z0-9_-]+)*/(apps|a|community|tools)/[A-Za-z0-9_-]+")


def esc(value: Any) -> str:
    """Escape for HTML text and attributes, and neutralise Liquid's ``{{``/``{%``."""
    return (html.escape(str(value), quote=True)
            .replace("{", "&#123;").replace("}", "&#125;"))


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / name).read_text(encoding="utf-8"))


def render(name: str, **values: Any) -> str:
    """Fill ``web/templates/<name>``; values are escaped unless wrapped in :class:`Raw`."""
    return _template(name).substitute(
        {k: v.html if isinstance(v, Raw) else esc(v) for k, v in values.items()})


class Raw:
    """Markup that is already safe (built from escaped parts)."""

    def __init__(self, markup: str) -> None:
        self.html = markup


@cache
def asset_version(name: str) -> str:
    """A content hash, so a new release never runs with a cached old script."""
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def asset_url(ctx: Context, name: str) -> str:
    """Absolute: the calendar is rendered on the shop's domain, the assets live on ours."""
    return f"{ctx.config.app_url}/static/{name}?v={asset_version(name)}"


def variant_number(variant: Any) -> str:
    """The numeric variant id ``/cart/add.js`` wants (gids end in it), or ``""``."""
    if variant is None:
        return ""
    text = str(variant)
    match = re.search(r"([0-9]+)$", text)
    return match.group(1) if match else ""


def storefront_paths(signed: dict[str, str]) -> tuple[str, str]:
    """(API base, storefront root) from the signed ``path_prefix``.

    Under Shopify the prefix is ``/apps/consult`` and the root ``/``; the demo storefront
    lives under ``/demo/store``, so its prefix is ``/demo/store/apps/consult``.
    """
    prefix = signed.get("path_prefix", "") or DEFAULT_PROXY_PREFIX
    if not _PREFIX.fullmatch(prefix):
        prefix = DEFAULT_PROXY_PREFIX
    root = prefix.rsplit("/", 2)[0] + "/"
    return prefix, root


def booking_config(ctx: Context, shop: Any, service_id: str) -> dict[str, Any]:
    """What the calendar needs to know about a service; NotFound for an unknown one."""
    service = catalog.get_service(ctx.db, shop.id, service_id)
    experts = [
        {"id": e["id"], "name": e["name"], "timezone": e["timezone"]}
        for e in catalog.list_experts(ctx.db, shop.id) if service["id"] in e["services"]
    ]
    return {
        "service": {"id": service["id"], "title": service["title"],
                    "duration_minutes": service["duration_minutes"]},
        "variant_id": variant_number(service["variant_id"]),
        "shop_timezone": shop.timezone,
        "experts": experts,
        "hold_ttl_seconds": ctx.config.hold_ttl_seconds,
    }


class BookPage:
    """``GET /proxy/book?service=ID[&expert=ID][&format=json]``."""

    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query_params(req)
        service_id = params.get("service", "").strip()
        resp.cache_control = ["no-store"]
        if params.get("format") == "json":
            if not service_id:
                raise ValidationError("the service parameter is required", field="service")
            resp.media = booking_config(self.ctx, req.context.shop, service_id)
            return
        api, root = storefront_paths(req.context.signed)
        resp.content_type = LIQUID
        if not service_id:
            resp.status = falcon.HTTP_400
            resp.text = render("book_missing.liquid",
                               message="Choose a consultation first: this page needs a "
                                       "service (…/book?service=ID).")
            return
        try:
            config = booking_config(self.ctx, req.context.shop, service_id)
        except NotFound:
            resp.status = falcon.HTTP_404
            resp.text = render("book_missing.liquid",
                               message="This consultation is not available for booking.")
            return
        expert = params.get("expert", "").strip()
        if expert not in {e["id"] for e in config["experts"]}:
            expert = ""
        resp.text = render(
            "book.liquid",
            css=asset_url(self.ctx, "booking.css"),
            js=asset_url(self.ctx, "booking.js"),
            api=api,
            root=root,
            service=config["service"]["id"],
            title=config["service"]["title"],
            duration=config["service"]["duration_minutes"],
            variant=config["variant_id"],
            shop_tz=config["shop_timezone"],
            experts=json.dumps(config["experts"], ensure_ascii=False),
            expert=expert,
        )


class AdminPage:
    """``GET /admin``: the embedded admin's single page (data comes from ``/admin/api``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        shop = req.get_param("shop") or ""
        if self.ctx.config.demo:
            bridge = (f'<script src="/static/demo-app-bridge.js?v='
                      f'{asset_version("demo-app-bridge.js")}"></script>')
            ancestors = "'self'"
        else:
            # App Bridge must be the first script, loaded synchronously, from Shopify.
            bridge = f'<script src="{APP_BRIDGE_URL}"></script>'
            ancestors = "https://admin.shopify.com"
            if valid_shop_domain(shop):
                ancestors = f"https://{shop} {ancestors}"
        resp.content_type = HTML
        resp.cache_control = ["no-store"]
        # Shopify requires embedded apps to name who may frame them.
        resp.set_header("Content-Security-Policy", f"frame-ancestors {ancestors};")
        resp.text = render(
            "admin.html",
            api_key=self.ctx.config.api_key,
            bridge=Raw(bridge),
            css=f"/static/admin.css?v={asset_version('admin.css')}",
            js=f"/static/admin.js?v={asset_version('admin.js')}",
            demo="true" if self.ctx.config.demo else "false",
        )


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/proxy/book", BookPage(ctx))
    app.add_route("/admin", AdminPage(ctx))
    app.add_static_route("/static", str(STATIC_DIR))
