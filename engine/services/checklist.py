"""The admin's first-run checklist (``GET /admin/api/checklist``): what a new shop still has
to set up before a customer can book, in the order a merchant does it.

=============  ==============================================================  ===========
step           done when                                                        checked in
=============  ==============================================================  ===========
service        the shop has a service (not deleted)                             database
expert         an expert (not deleted) is assigned to a service (not deleted)   database
hours          an expert (not deleted) has at least one weekly working window   database
product        a service is linked to its Shopify product: its ``product_id``   database
               (or ``variant_id``, which names the product too) is set
theme_block    the shop's live (``MAIN``) theme has the booking app block of    Admin API
               ``extensions/consultbook-booking`` in a product template
=============  ==============================================================  ===========

``done`` is ``True``/``False``, or ``None`` when the step could not be checked; then
``detail`` says why. Only ``theme_block`` can be ``None``: the shop has no Shopify token,
the app was not granted ``read_themes``, or Shopify's Admin API refused or did not answer.
Nothing here raises for Shopify's sake: an unreachable Shopify is a ``None`` step.

The theme is read through the project's one Admin API client
(:func:`engine.services.install.admin_client`), inside :func:`~engine.shopify.admin_api.
no_waiting` with short timeouts: a web request never sleeps on a throttled or failing
Shopify, it reports the step unchecked instead. Its answer is kept per shop for a minute
in the process (:class:`ThemeCache`; an unchecked answer for 15 s), so the admin's home
page does not ask Shopify on every load. Nothing is stored in the database.

An app block in a JSON template is a block whose ``type`` is
``shopify://apps/<app handle>/blocks/<block handle>/<extension uuid>``; the booking block
is the block handle ``booking`` (``blocks/booking.liquid``). Its schema enables it on
product templates only, so only ``templates/product*.json`` are read. A block the
merchant disabled (``"disabled": true``) does not count.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from engine.errors import ConsultbookError, NotFound
from engine.services.install import Context, ShopifyReauthRequired, admin_client
from engine.shopify.admin_api import AdminApiAuthError, AdminApiError, no_waiting
from engine.shopify.oauth import ShopifyUnavailable
from engine.store.models import Expert, ExpertService, Service, Shop, WeeklyHours

__all__ = [
    "BLOCK_HANDLE",
    "EXTENSION_HANDLE",
    "STEP_IDS",
    "THEMES_QUERY",
    "THEME_SCOPE",
    "ShopFacts",
    "ThemeCache",
    "ThemeCheck",
    "checklist",
    "find_booking_block",
    "theme_editor_url",
]

STEP_IDS = ("service", "expert", "hours", "product", "theme_block")
#: The access scope the theme check needs (shopify.app.toml, Config.shopify_scopes).
THEME_SCOPE = "read_themes"
#: The booking block's handle: extensions/consultbook-booking/blocks/booking.liquid.
BLOCK_HANDLE = "booking"
EXTENSION_HANDLE = "consultbook-booking"
#: The app handle in shopify.app.toml (``handle = "consultbook"``).
APP_HANDLE = "consultbook"
#: Product templates only: the block's schema has ``enabled_on: {templates: [product]}``.
TEMPLATE_FILES = ("templates/product*.json",)
MAX_PAGES = 5  # 250 product templates; a theme with more is not a theme anyone edits
#: How long a theme answer is kept (seconds): found / not found, and unchecked.
THEME_TTL = 60.0
THEME_ERROR_TTL = 15.0
#: (connect, read) timeouts of the theme query: the admin's home page waits for it.
THEME_TIMEOUT: tuple[float, float] = (2.0, 5.0)

THEMES_QUERY = (
    "query consultbookThemeBlocks($filenames: [String!], $after: String) {"
    " themes(first: 1, roles: [MAIN]) { nodes { id name"
    " files(filenames: $filenames, first: 50, after: $after) {"
    " nodes { filename body { ... on OnlineStoreThemeFileBodyText { content } } }"
    " pageInfo { hasNextPage endCursor } } } } }"
)

_APP_BLOCK = re.compile(r"shopify://apps/(?P<app>[^/\s\"]+)/blocks/(?P<block>[^/\s\"]+)"
                        r"(?:/(?P<uid>[^/\s\"]+))?")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?"
                   r"[0-9A-Fa-f]{12}")
_TYPE_FIELD = re.compile(r'"type"\s*:\s*"(shopify://apps/[^"]{1,400})"')
_LEADING_COMMENT = re.compile(r"\A\s*/\*.*?\*/", re.DOTALL)


# ------------------------------------------------------------------ theme detection


def is_booking_block(block_type: str) -> bool:
    """Whether an app block ``type`` is this app's booking block: the block handle
    ``booking`` with an extension uuid (``.../blocks/booking/<uuid>``), or any
    ``booking`` block under this app's or its extension's handle."""
    match = _APP_BLOCK.fullmatch(block_type.strip())
    if match is None or match["block"] != BLOCK_HANDLE:
        return False
    uid = match["uid"]
    if uid is not None and _UUID.fullmatch(uid):
        return True
    return match["app"] in (APP_HANDLE, EXTENSION_HANDLE)


def _blocks(node: Any) -> Iterator[dict[str, Any]]:
    """Every object with a string ``type`` in a template document (sections, their
    blocks, nested theme blocks), skipping what the merchant disabled."""
    if isinstance(node, dict):
        if node.get("disabled") is True:
            return
        if isinstance(node.get("type"), str):
            yield node
        for value in node.values():
            yield from _blocks(value)
    elif isinstance(node, list):
        for value in node:
            yield from _blocks(value)


def template_has_block(content: str) -> bool:
    """Whether a JSON template's text has the booking block (Shopify may put a ``/* */``
    comment before the JSON; a template that does not parse is searched as text)."""
    text = _LEADING_COMMENT.sub("", content, count=1)
    try:
        doc = json.loads(text)
    except ValueError:
        return any(is_booking_block(t) for t in _TYPE_FIELD.findall(content))
    return any(is_booking_block(block["type"]) for block in _blocks(doc))


def find_booking_block(files: Iterable[tuple[str, str]]) -> str | None:
    """The first template filename among ``(filename, content)`` with the booking block."""
    for filename, content in files:
        if template_has_block(content):
            return filename
    return None


@dataclass(frozen=True)
class ThemeCheck:
    """The theme step's answer: ``done`` (``None``: unchecked) and what to tell the
    merchant."""

    done: bool | None
    detail: str


class ThemeCache:
    """Theme answers per shop, in this process, for ``ttl`` seconds (``error_ttl`` for an
    unchecked one). Another process asking Shopify again is harmless: it is a cache of a
    read, not state."""

    def __init__(self, ttl: float = THEME_TTL, error_ttl: float = THEME_ERROR_TTL,
                 max_entries: int = 10_000) -> None:
        self.ttl, self.error_ttl, self.max_entries = ttl, error_ttl, max_entries
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[datetime, datetime, ThemeCheck]] = {}

    def get(self, shop_id: str, now: datetime) -> ThemeCheck | None:
        with self._lock:
            entry = self._entries.get(shop_id)
            if entry is None:
                return None
            stored, until, check = entry
            if not stored <= now < until:  # expired, or the clock went back
                del self._entries[shop_id]
                return None
            return check

    def put(self, shop_id: str, now: datetime, check: ThemeCheck) -> None:
        seconds = self.ttl if check.done is not None else self.error_ttl
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[shop_id] = (now, now + timedelta(seconds=seconds), check)

    def forget(self, shop_id: str) -> None:
        with self._lock:
            self._entries.pop(shop_id, None)


def _query_theme(ctx: Context, shop_id: str) -> ThemeCheck:
    """Ask Shopify for the main theme's product templates and look for the block."""
    files: list[tuple[str, str]] = []
    unreadable: list[str] = []
    theme_name = ""
    after: str | None = None
    with no_waiting(timeout=THEME_TIMEOUT), admin_client(ctx, shop_id) as api:
        for _ in range(MAX_PAGES):
            data = api.graphql(THEMES_QUERY, {"filenames": list(TEMPLATE_FILES),
                                              "after": after})
            themes = ((data.get("themes") or {}).get("nodes")) or []
            if not themes or not isinstance(themes[0], dict):
                return ThemeCheck(None, "The shop has no published theme to check.")
            theme = themes[0]
            theme_name = str(theme.get("name") or "")
            connection = theme.get("files") or {}
            for node in connection.get("nodes") or []:
                if not isinstance(node, dict):
                    continue
                filename = str(node.get("filename") or "")
                content = (node.get("body") or {}).get("content")
                if isinstance(content, str):
                    files.append((filename, content))
                else:
                    unreadable.append(filename)
            page = connection.get("pageInfo") or {}
            after = page.get("endCursor") if page.get("hasNextPage") else None
            if find_booking_block(files) is not None or not isinstance(after, str):
                break
    where = f"your live theme ({theme_name})" if theme_name else "your live theme"
    found = find_booking_block(files)
    if found is not None:
        return ThemeCheck(True, f"The booking block is on {where}, in {found}.")
    if unreadable:
        return ThemeCheck(None, f"Some product templates of {where} could not be read "
                                f"({', '.join(unreadable[:3])}).")
    return ThemeCheck(False, f"The booking block is not on a product template of {where} "
                             "yet. Open the theme editor to add it to your product page.")


@dataclass(frozen=True)
class ShopFacts:
    """What the theme step needs of the shop's row."""

    id: str
    domain: str
    has_token: bool
    scopes: str | None

    @classmethod
    def of(cls, row: Shop) -> ShopFacts:
        return cls(row.id, row.domain, bool(row.access_token), row.scopes)


def theme_check(ctx: Context, shop: ShopFacts, cache: ThemeCache | None = None) -> ThemeCheck:
    """The theme step for ``shop``: cached, else asked of Shopify; never raises for
    Shopify's failures."""
    if not shop.has_token:
        return ThemeCheck(None, "consultbook has no Shopify access token for this shop yet, "
                                "so the theme could not be checked. Open the app from your "
                                "Shopify admin to connect it.")
    granted = [s.strip() for s in (shop.scopes or "").split(",") if s.strip()]
    # scopes unknown (a shop provisioned by the CLI): ask Shopify, which will say.
    if granted and THEME_SCOPE not in granted:
        return ThemeCheck(None, f"consultbook has not been granted the {THEME_SCOPE} access "
                                "scope, so the theme could not be checked. Open the app from "
                                "your Shopify admin and approve the updated access.")
    now = ctx.clock.now()
    if cache is not None:
        cached = cache.get(shop.id, now)
        if cached is not None:
            return cached
    try:
        check = _query_theme(ctx, shop.id)
    except ShopifyUnavailable:
        check = ThemeCheck(None, "Shopify's Admin API did not answer, so the theme could "
                                 "not be checked. Try again in a minute.")
    except (ShopifyReauthRequired, AdminApiAuthError):
        check = ThemeCheck(None, "Shopify refused the shop's access token, so the theme "
                                 "could not be checked. Open the app from your Shopify "
                                 "admin to reconnect it.")
    except AdminApiError as exc:
        if THEME_SCOPE in exc.message or "access denied" in exc.message.lower():
            check = ThemeCheck(None, f"Shopify says consultbook may not read themes (the "
                                     f"{THEME_SCOPE} scope). Open the app from your Shopify "
                                     "admin and approve the updated access.")
        else:
            check = ThemeCheck(None, "Shopify's Admin API could not answer about the theme "
                                     f"({exc.message[:200]}).")
    except (ConsultbookError, ValueError):
        check = ThemeCheck(None, "The theme could not be checked: the shop's connection to "
                                 "Shopify is not usable.")
    if cache is not None:
        cache.put(shop.id, now, check)
    return check


def theme_editor_url(shop_domain: str, api_key: str, *, add_block: bool = True) -> str:
    """Shopify's theme-editor deep link that adds the booking block to the product
    template, in a new Apps section: ``https://{shop}/admin/themes/current/editor?
    template=product&addAppBlockId={api_key}/booking&target=newAppsSection``. With
    ``add_block=False``, the product template in the editor (the block is there)."""
    base = f"https://{shop_domain}/admin/themes/current/editor?template=product"
    if not add_block:
        return base
    return (f"{base}&addAppBlockId={quote(api_key, safe='')}/{BLOCK_HANDLE}"
            "&target=newAppsSection")


# ------------------------------------------------------------------ the checklist


def _counts(session: Session, shop_id: str) -> dict[str, int]:
    live_service = (Service.shop_id == shop_id, Service.deleted_at.is_(None))
    live_expert = (Expert.shop_id == shop_id, Expert.deleted_at.is_(None))
    services = session.scalar(select(func.count()).select_from(Service).where(*live_service))
    experts = session.scalar(select(func.count()).select_from(Expert).where(*live_expert))
    assigned = session.scalar(select(exists().where(
        ExpertService.expert_id == Expert.id, ExpertService.service_id == Service.id,
        *live_expert, *live_service)))
    hours = session.scalar(select(exists().where(
        WeeklyHours.expert_id == Expert.id, WeeklyHours.end_minute > WeeklyHours.start_minute,
        *live_expert)))
    linked = session.scalar(select(func.count()).select_from(Service).where(
        *live_service, (func.coalesce(Service.product_id, "") != "")
        | (func.coalesce(Service.variant_id, "") != "")))
    return {"services": int(services or 0), "experts": int(experts or 0),
            "assigned": int(bool(assigned)), "hours": int(bool(hours)),
            "linked": int(linked or 0)}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _step(step_id: str, done: bool | None, title: str, detail: str, section: str | None,
          url: str | None = None) -> dict[str, Any]:
    return {"id": step_id, "done": done, "title": title, "detail": detail,
            "section": section, "url": url}


def checklist(ctx: Context, shop_id: str, cache: ThemeCache | None = None) -> dict[str, Any]:
    """The shop's first-run checklist::

        {"checklist": {"steps": [{"id", "done": bool | None, "title", "detail",
                                  "section": "services" | "experts" | "hours" | None,
                                  "url": str | None}, ...],
                       "done": n, "total": 5}}

    Steps in :data:`STEP_IDS` order; ``done`` counts the steps that are ``True``.
    """
    with ctx.db.read() as session:
        row = session.get(Shop, shop_id)
        if row is None:
            raise NotFound("no such shop")
        shop = ShopFacts.of(row)
        counts = _counts(session, shop_id)
    n = counts
    steps = [
        _step("service", n["services"] > 0, "Create a service",
              f"You offer {_plural(n['services'], 'service')}." if n["services"] else
              "Add what customers book: a title, a duration and when it can be booked.",
              "services"),
        _step("expert", bool(n["assigned"]), "Add an expert and assign a service",
              "An expert is assigned to a service." if n["assigned"] else
              (f"You have {_plural(n['experts'], 'expert')}, but none is assigned to a "
               "service yet: choose the services each expert delivers."
               if n["experts"] else
               "Add who delivers the consultations and choose the services they deliver."),
              "experts"),
        _step("hours", bool(n["hours"]), "Set working hours",
              "An expert has weekly working hours." if n["hours"] else
              "Give an expert weekly working hours: customers can book only inside them.",
              "hours"),
        _step("product", n["linked"] > 0, "Link a service to its Shopify product",
              f"{_plural(n['linked'], 'service')} linked to a Shopify product."
              if n["linked"] else
              "Enter the product id (or variant id) that sells a service: an order for "
              "that product books the appointment.", "services"),
    ]
    theme = theme_check(ctx, shop, cache)
    steps.append(_step("theme_block", theme.done, "Add the booking block to your theme",
                       theme.detail, None,
                       theme_editor_url(shop.domain, ctx.config.api_key,
                                        add_block=theme.done is not True)))
    return {"checklist": {"steps": steps,
                          "done": sum(1 for s in steps if s["done"] is True),
                          "total": len(steps)}}
