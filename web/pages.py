"""The two HTML faces: the storefront booking calendar and the embedded admin page.

* ``GET /proxy/book?service=ID`` (App Proxy, signed): the calendar, answered as
  ``application/liquid`` so Shopify renders it inside the shop's theme. The markup is a
  root element whose ``data-*`` attributes configure ``static/booking.js``; the script
  talks to the API through the same proxy prefix the page was served under (Shopify
  signs those calls). ``&format=json`` answers the same configuration as JSON, for the
  theme app extension block, which renders its own root element on a product page.
* ``GET /proxy/manage?booking=ID&token=T`` (App Proxy, signed): the page the confirmation
  mail links to, in the same look; ``static/manage.js`` reads the booking with the token
  and reschedules it with the same calendar (``booking.js``), or cancels it.
  ``GET /proxy/my-bookings/page``: the logged-in customer's bookings (the theme block
  ``my-bookings`` shows the same list anywhere in the theme). Both are Liquid like the
  calendar, in the storefront's language.
* ``GET /admin``: the embedded admin page. In production it loads App Bridge from
  Shopify's CDN (the one external script, which Shopify requires); under ``demo`` a
  local shim mints session tokens through a demo-only endpoint instead.
* ``/static/*``: the scripts and styles, served by us (no runtime CDN on the storefront).

Templates are plain ``string.Template`` files in ``web/templates``; every value that goes
into them is escaped for HTML *and* for Liquid (``{``/``}`` become character references),
so a merchant's service title can never turn into Liquid code in the shop's theme.

Language: every string of the calendar comes from a message catalog,
``web/static/i18n/<locale>.json`` (en, de, fr, es, it, nl, pt-BR, ja, ar). The page
*inlines* the catalog of the shop's locale into the root's ``data-i18n`` (no extra
request, nothing to wait for before the calendar can be drawn; the script itself carries
only English). The locale is the ``locale`` query parameter when one is given (the demo's
storefront passes it), else the storefront's own: the Liquid answer reads
``request.locale.iso_code`` and picks the root rendered for that language (a Liquid
``case`` over the shipped catalogs; any other language gets English). Under ``demo``
nothing renders Liquid, so the page is English unless ``?locale=`` says otherwise.
The only Liquid in the answer is that ``case`` and the locale itself; merchant text is
escaped as above.
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


I18N_DIR = STATIC_DIR / "i18n"
# Right-to-left scripts among the languages a shop may use (the calendar sets `dir`).
RTL_LANGUAGES = frozenset({"ar", "he", "fa", "ur", "ps", "yi", "dv", "ckb", "sd", "ug"})
_LOCALE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}")
# What the Liquid answer says for the storefront's locale (Shopify fills it in).
LIQUID_LOCALE = "{{ request.locale.iso_code | escape }}"


@cache
def catalogs() -> dict[str, dict[str, str]]:
    """``{locale: {key: text}}``: every shipped message catalog (``en`` is the source)."""
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(I18N_DIR.glob("*.json"))}


def catalog_locale(code: str) -> str:
    """The shipped catalog for a locale code: the same code (``pt-BR``), else the same
    language (``de-AT`` -> ``de``, ``pt`` -> ``pt-BR``), else ``en``."""
    names = catalogs()
    lowered = {name.lower(): name for name in names}
    if code.lower() in lowered:
        return lowered[code.lower()]
    lang = code.split("-")[0].lower()
    for name in names:
        if name.split("-")[0].lower() == lang:
            return name
    return "en"


def valid_locale(code: str) -> str:
    """``code`` if it looks like a BCP 47 locale (``de``, ``pt-BR``), else ``""``."""
    code = code.strip().replace("_", "-")
    return code if _LOCALE.fullmatch(code) else ""


def text_direction(catalog: str) -> str:
    return "rtl" if catalog.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


def _localized(render_one: Any, locale: str) -> str:
    """One root for ``locale`` when the server knows it; else a Liquid ``case`` over the
    shipped catalogs on the storefront's ``request.locale.iso_code`` (English otherwise).
    ``render_one(catalog, locale_markup)`` renders the root for one catalog."""
    if locale:
        return str(render_one(catalog_locale(locale), esc(locale)))
    names = [n for n in catalogs() if n != "en"]
    parts = ["{%- assign cb_lang = request.locale.iso_code | split: '-' | first | downcase -%}",
             "{%- case cb_lang -%}"]
    for name in names:
        parts.append(f"{{%- when '{name.split('-')[0].lower()}' -%}}")
        parts.append(render_one(name, LIQUID_LOCALE))
    parts.append("{%- else -%}")
    parts.append(render_one("en", LIQUID_LOCALE))
    parts.append("{%- endcase -%}")
    return "\n".join(parts)


def booking_config(ctx: Context, shop: Any, service_id: str) -> dict[str, Any]:
    """What the calendar needs to know about a service; NotFound for an unknown one."""
    service = catalog.get_service(ctx.db, shop.id, service_id)
    experts = [
        {"id": e["id"], "name": e["name"], "timezone": e["timezone"],
         # Optional face and words; left out when the merchant gave none (smaller page).
         **{k: e[k] for k in ("photo_url", "bio") if e.get(k)}}
        for e in catalog.list_experts(ctx.db, shop.id) if service["id"] in e["services"]
    ]
    return {
        "service": {"id": service["id"], "title": service["title"],
                    "duration_minutes": service["duration_minutes"],
                    # Seats per session (the calendar offers a seats picker above 1) and
                    # the intake questions asked before the hold.
                    "seats": service.get("seats") or 1,
                    "questions": service.get("questions") or []},
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
        # The storefront's locale: asked for, else Shopify's (Liquid), else (demo) English.
        locale = valid_locale(params.get("locale", "")) or ("en" if self.ctx.config.demo else "")
        resp.content_type = LIQUID
        if not service_id:
            resp.status = falcon.HTTP_400
            resp.text = self._missing(locale, "choose_service")
            return
        try:
            config = booking_config(self.ctx, req.context.shop, service_id)
        except NotFound:
            resp.status = falcon.HTTP_404
            resp.text = self._missing(locale, "not_available")
            return
        expert = params.get("expert", "").strip()
        if expert not in {e["id"] for e in config["experts"]}:
            expert = ""
        title = config["service"]["title"]

        def one(catalog: str, locale_markup: str) -> str:
            text = catalogs()[catalog]
            return render(
                "book_root.liquid",
                lang=catalog, dir=text_direction(catalog),
                api=api, root=root,
                service=config["service"]["id"], title=title,
                duration=config["service"]["duration_minutes"],
                variant=config["variant_id"], shop_tz=config["shop_timezone"],
                experts=json.dumps(config["experts"], ensure_ascii=False),
                seats=config["service"]["seats"],
                questions=json.dumps(config["service"]["questions"], ensure_ascii=False),
                expert=expert,
                locale=Raw(locale_markup),
                i18n=json.dumps(text, ensure_ascii=False, separators=(",", ":")),
                # The merchant's title is put in as entered (escaped), not translated.
                heading=text["book_title"].replace("{title}", title),
                needs_js=text["needs_js"],
            )

        resp.text = render(
            "book.liquid",
            css=asset_url(self.ctx, "booking.css"),
            js=asset_url(self.ctx, "booking.js"),
            calendar=Raw(_localized(one, locale)),
        )

    @staticmethod
    def _missing(locale: str, key: str) -> str:
        def one(catalog: str, _locale_markup: str) -> str:
            text = catalogs()[catalog]
            return render("book_missing.liquid", lang=catalog, dir=text_direction(catalog),
                          heading=text["booking_heading"], message=text[key])
        return _localized(one, locale)


class ManagePage:
    """``GET /proxy/manage?booking=ID&token=T``: the page a confirmation mail links to.

    Only the page's shell: ``static/manage.js`` fetches the booking with the token
    (``GET /proxy/bookings/ID?token=T``, one 404 for every wrong link) and offers what the
    shop's policy allows; the reschedule uses the booking calendar (``booking.js``), so
    both scripts load. The values are escaped like the booking page's.
    """

    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query_params(req)
        booking, token = params.get("booking", "").strip(), params.get("token", "").strip()
        api, root = storefront_paths(req.context.signed)
        locale = valid_locale(params.get("locale", "")) or ("en" if self.ctx.config.demo else "")
        resp.cache_control = ["no-store"]
        # The token is a credential: keep it out of the Referer of whatever the page loads.
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.content_type = LIQUID

        def one(catalog: str, locale_markup: str) -> str:
            text = catalogs()[catalog]
            return render("manage_root.liquid", lang=catalog, dir=text_direction(catalog),
                          api=api, root=root, booking=booking[:64], token=token[:256],
                          locale=Raw(locale_markup),
                          i18n=json.dumps(text, ensure_ascii=False, separators=(",", ":")),
                          heading=text["m_title"], needs_js=text["needs_js"])

        resp.text = render("manage.liquid", css=asset_url(self.ctx, "booking.css"),
                           calendar_js=asset_url(self.ctx, "booking.js"),
                           js=asset_url(self.ctx, "manage.js"), page=Raw(_localized(one, locale)))


class MyBookingsPage:
    """``GET /proxy/my-bookings/page``: the logged-in customer's bookings as a page (the
    theme block ``my-bookings`` shows the same list on any page); the list itself is
    ``GET /proxy/my-bookings`` (JSON), fetched by ``static/manage.js``."""

    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query_params(req)
        api, root = storefront_paths(req.context.signed)
        locale = valid_locale(params.get("locale", "")) or ("en" if self.ctx.config.demo else "")
        resp.cache_control = ["no-store"]
        resp.content_type = LIQUID

        def one(catalog: str, locale_markup: str) -> str:
            text = catalogs()[catalog]
            return render("my_bookings_root.liquid", lang=catalog, dir=text_direction(catalog),
                          api=api, root=root, locale=Raw(locale_markup),
                          i18n=json.dumps(text, ensure_ascii=False, separators=(",", ":")),
                          heading=text["my_title"], needs_js=text["needs_js"])

        resp.text = render("my_bookings.liquid", css=asset_url(self.ctx, "booking.css"),
                           js=asset_url(self.ctx, "manage.js"), page=Raw(_localized(one, locale)))


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
    app.add_route("/proxy/manage", ManagePage(ctx))
    app.add_route("/proxy/my-bookings/page", MyBookingsPage(ctx))
    app.add_route("/admin", AdminPage(ctx))
    app.add_static_route("/static", str(STATIC_DIR))
