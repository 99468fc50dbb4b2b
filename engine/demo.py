"""The demo shop: seeded data for `consultbook demo` (idempotent: safe to run again), and
the demo's configuration: its Shopify is the demo itself (:func:`demo_config`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import select

from engine.bootstrap import Context
from engine.config import Config
from engine.services import catalog, schedules, shops
from engine.shopify import sign_proxy
from engine.store.models import Expert, Service

DEMO_SHOP = "consultbook-demo.myshopify.com"
DEMO_TZ = "Europe/Berlin"
# The demo shop's offline Admin API token: what the demo's own Shopify (web/demo_shopify.py)
# accepts in X-Shopify-Access-Token. Not a secret: it opens nothing but the demo.
DEMO_ACCESS_TOKEN = "shpat_demo_token"
# Where the demo answers Shopify's Admin API (GraphQL, the token endpoint) for the app.
ADMIN_API_PREFIX = "/demo/shopify"

WEEKDAYS_9_TO_5 = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
DEMO_CURRENCY = "EUR"

# The simulated storefront's products: one per seeded service (title -> product).
DEMO_PRODUCTS: dict[str, dict[str, str]] = {
    "Intro call (30 min)": {"product_id": "7100000000001", "variant_id": "4100000000001",
                            "price": "49.00"},
    "Deep-dive session (60 min)": {"product_id": "7100000000002",
                                   "variant_id": "4100000000002", "price": "120.00"},
    "Group workshop (90 min)": {"product_id": "7100000000003",
                                "variant_id": "4100000000003", "price": "35.00"},
}
# The workshop shows capacity: six seats a session, two sessions a day at most, two
# intake questions. Its own expert, so the one-to-one services' times are untouched.
WORKSHOP = "Group workshop (90 min)"
WORKSHOP_EXPERT = "Lena Okafor"
DEFAULT_PRICE = "75.00"


def demo_admin_origin(host: str, port: int) -> str:
    """The demo's own Shopify admin origin, always on this machine: a wildcard bind
    address (``0.0.0.0``, ``::``, empty) is reached through the loopback address."""
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 (recognising it, not binding)
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    return f"http://{host}:{port}{ADMIN_API_PREFIX}"


def demo_config(config: Config, *, host: str, port: int) -> Config:
    """The configuration `consultbook demo` serves with: the Shopify Admin API calls the
    app makes (order tags, refunds, token exchange) go to the demo itself, on
    ``host:port`` (the address the demo server listens on), never to
    ``https://consultbook-demo.myshopify.com``. An origin the operator configured
    (``CONSULTBOOK_SHOPIFY_ADMIN_ORIGIN``) is kept."""
    if config.origins.get("shopify_admin"):
        return config
    origins = {**config.origins, "shopify_admin": demo_admin_origin(host, port)}
    return config.with_(origins=origins)


@dataclass(frozen=True)
class DemoShop:
    shop: shops.ShopRef
    services: dict[str, str]  # title -> id
    experts: dict[str, str]  # name -> id


def seed(ctx: Context) -> DemoShop:
    """Install the demo shop: two one-to-one services with two experts in different
    zones, and a seated, limited workshop with intake questions and its own expert."""
    shop = shops.install_shop(ctx.db, ctx.clock, ctx.keyring, DEMO_SHOP, DEMO_TZ,
                              access_token=DEMO_ACCESS_TOKEN)
    with ctx.db.read() as session:
        have_services = {s.title: s.id for s in session.scalars(
            select(Service).where(Service.shop_id == shop.id, Service.deleted_at.is_(None)))}
        have_experts = {e.name: e.id for e in session.scalars(
            select(Expert).where(Expert.shop_id == shop.id, Expert.deleted_at.is_(None)))}
    services = dict(have_services)
    for doc in (
        {"title": "Intro call (30 min)", "duration_minutes": 30, "min_notice_minutes": 60,
         "max_days_ahead": 60},
        {"title": "Deep-dive session (60 min)", "duration_minutes": 60, "interval_minutes": 30,
         "buffer_after_minutes": 15, "min_notice_minutes": 240, "max_days_ahead": 90},
        {"title": WORKSHOP, "duration_minutes": 90, "min_notice_minutes": 120,
         "max_days_ahead": 60, "seats": 6, "limits": {"day": 2},
         "questions": [
             {"id": "goal", "label": "What would you like to get out of it?",
              "type": "textarea", "required": True},
             {"id": "level", "label": "Your experience", "type": "choice",
              "required": False, "choices": ["Beginner", "Some", "Expert"]}]},
    ):
        title = str(doc["title"])
        product = DEMO_PRODUCTS[title]
        ids = {"product_id": product["product_id"], "variant_id": product["variant_id"]}
        if title not in services:
            services[title] = catalog.create_service(
                ctx.db, ctx.clock, shop.id, {**doc, **ids})["id"]
        elif catalog.get_service(ctx.db, shop.id, services[title])["variant_id"] is None:
            # A demo database from before the storefront existed: link it to its product.
            catalog.update_service(ctx.db, shop.id, services[title], ids, "update")
    experts = dict(have_experts)
    one_to_one = [sid for title, sid in services.items() if title != WORKSHOP]
    for name, email, tz, hours, offers in (
        ("Anna Berger", "anna@example.com", "Europe/Berlin", WEEKDAYS_9_TO_5, one_to_one),
        ("Maya Thompson", "maya@example.com", "America/New_York",
         {**WEEKDAYS_9_TO_5, "sat": [["10:00", "14:00"]]}, one_to_one),
        (WORKSHOP_EXPERT, "lena@example.com", "Europe/Berlin", WEEKDAYS_9_TO_5,
         [services[WORKSHOP]]),
    ):
        if name not in experts:
            expert = catalog.create_expert(ctx.db, ctx.clock, shop.id, {
                "name": name, "email": email, "timezone": tz, "services": offers})
            experts[name] = expert["id"]
            schedules.put_schedule(ctx.db, shop.id, expert["id"], {"weekly": hours})
    return DemoShop(shop, services, experts)


def signed_proxy_url(ctx: Context, path: str, params: dict[str, str],
                     shop: str = DEMO_SHOP) -> str:
    """A URL on this app as Shopify's App Proxy would forward it (valid for the max age)."""
    signed = {**params, "shop": shop, "path_prefix": "/apps/consult",
              "timestamp": str(int(ctx.clock.now().timestamp()))}
    signed["signature"] = sign_proxy(signed, ctx.config.api_secret)
    return f"{ctx.config.app_url}{path}?{urlencode(signed)}"


def sample_availability_url(ctx: Context, demo: DemoShop) -> str:
    today = ctx.clock.now().astimezone(ZoneInfo(DEMO_TZ)).date() + timedelta(days=1)
    service = next(iter(demo.services.values()))
    return signed_proxy_url(ctx, "/proxy/availability",
                            {"service": service, "start": today.isoformat(), "days": "7"})


def demo_urls(base: str, demo: DemoShop) -> list[tuple[str, str]]:
    """What `consultbook demo` tells a newcomer to open, as (label, URL)."""
    urls = [("storefront", f"{base}/demo/store")]
    for title, sid in demo.services.items():
        urls.append((f"  book: {title}", f"{base}/demo/store/products/{sid}"))
    urls += [
        ("admin (embedded)", f"{base}/demo/admin"),
        ("outbox (mail, Shopify calls)", f"{base}/demo/outbox"),
        ("all demo pages", f"{base}/demo"),
    ]
    return urls
