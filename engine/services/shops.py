"""Shops: provisioning, lookup by domain, and the per-shop settings document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, column, select, table
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.crypto import Keyring
from engine.errors import Forbidden, NotFound, ValidationError
from engine.services.validation import Field, Mode, integer, parse_document, text, timezone
from engine.shopify import valid_shop_domain
from engine.store import Database, new_id
from engine.store.models import ExpertService, Shop, ShopSettings

DEFAULT_REMINDERS = (1440, 60)
CALENDAR_PROVIDERS = ("local", "google", "outlook")
VIDEO_PROVIDERS = ("none", "meet", "teams")
MAIL_PROVIDERS = ("outbox", "smtp")


class UnknownShop(NotFound):
    """The storefront names a shop that is not installed (contract: 404 unknown_shop)."""

    code = "unknown_shop"


class ShopNotInstalled(Forbidden):
    """A valid session token for a shop that is not (or no longer) installed: 403."""

    code = "shop_not_installed"


@dataclass(frozen=True, slots=True)
class ClaimVersions:
    """The claim versions (``availability_versions``, migration 0015) of one service's
    experts, read with the shop (:func:`installed_shop`)."""

    service_id: str
    #: Every expert linked to the service when read (deleted ones too).
    linked: frozenset[str]
    #: ``(expert id, version)`` of those of them with a version row, by expert id.
    versions: tuple[tuple[str, int], ...]

    def of(self, expert_ids: Sequence[str]) -> tuple[tuple[str, int], ...] | None:
        """The versions of ``expert_ids`` as ``availability_versions`` would give them
        (experts without a row left out), or None when one of them was not linked to
        the service when these were read (the caller reads them itself)."""
        if not self.linked.issuperset(expert_ids):
            return None
        wanted = set(expert_ids)
        return tuple(v for v in self.versions if v[0] in wanted)


@dataclass(frozen=True, slots=True)
class ShopRef:
    id: str
    domain: str
    timezone: str
    # Readings taken in the request's shop lookup (:func:`installed_shop`), not part of
    # the shop's identity (equality and hashing ignore them); None: not read.
    #: The shop's catalog version (``catalog_versions``, migration 0016).
    catalog_version: int | None = field(default=None, compare=False)
    #: The claim versions of the experts of the service the request names.
    claim_versions: ClaimVersions | None = field(default=None, compare=False, repr=False)


def access_token_aad(shop_id: str) -> str:
    return f"shop:{shop_id}:access_token"


def install_shop(db: Database, clock: Clock, keyring: Keyring, domain: str, tz: str,
                 access_token: str | None = None) -> ShopRef:
    """Provision (or re-provision) a shop. Idempotent on the domain: a reinstall keeps the
    shop's data, marks it installed, and replaces the timezone and token."""
    domain = domain.strip().lower()
    if not valid_shop_domain(domain):
        raise ValidationError(f"{domain!r} is not a shop domain like example.myshopify.com",
                              field="domain")
    timezone("timezone", tz)
    with db.write() as session:
        shop = session.scalars(select(Shop).where(Shop.domain == domain)).one_or_none()
        if shop is None:
            shop = Shop(id=new_id("shop"), domain=domain, timezone=tz, installed=True,
                        installed_at=clock.now())
            session.add(shop)
            session.add(ShopSettings(shop_id=shop.id, calendar_provider="local",
                                     video_provider="none", mail_provider="outbox",
                                     reminders=list(DEFAULT_REMINDERS),
                                     pending_hold_hours=48))
        else:
            shop.timezone = tz
            shop.installed = True
            shop.installed_at = clock.now()
            shop.uninstalled_at = None
        if access_token is not None:
            shop.access_token = keyring.encrypt(access_token, aad=access_token_aad(shop.id))
        session.flush()
        return ShopRef(shop.id, shop.domain, shop.timezone)


CATALOG_VERSIONS = table("catalog_versions", column("shop_id"), column("version"))
AVAILABILITY_VERSIONS = table("availability_versions", column("expert_id"), column("version"))

# Built once: every storefront and admin request runs one of them. The shop with its
# catalog version (no row yet: version 0) ...
_BY_DOMAIN = (select(Shop.id, Shop.domain, Shop.timezone, Shop.installed,
                     CATALOG_VERSIONS.c.version.label("catalog_version"))
              .outerjoin(CATALOG_VERSIONS, CATALOG_VERSIONS.c.shop_id == Shop.id)
              .where(Shop.domain == bindparam("domain")))
# ... and, for a request that names a service, one row per expert linked to it with
# that expert's claim version (NULLs: no expert, or no version row yet).
_BY_DOMAIN_WITH_SERVICE = (
    _BY_DOMAIN.add_columns(ExpertService.expert_id,
                           AVAILABILITY_VERSIONS.c.version.label("claim_version"))
    .outerjoin(ExpertService, ExpertService.service_id == bindparam("service"))
    .outerjoin(AVAILABILITY_VERSIONS,
               AVAILABILITY_VERSIONS.c.expert_id == ExpertService.expert_id))


def installed_shop(session: Session, domain: str, *, admin: bool = False,
                   service: str | None = None) -> ShopRef:
    """The installed shop with this domain, else UnknownShop (or ShopNotInstalled for admin).
    Always read from the database: an uninstall takes effect on the next request.

    The same statement reads the shop's catalog version and, given ``service`` (an id
    the request names; any text, it only selects rows), the claim versions of the
    experts linked to that service: what a cached availability answer is checked
    against, so that a cache hit costs this one round trip
    (engine.services.availability)."""
    if service is None:
        rows = [tuple(r) for r in session.execute(_BY_DOMAIN, {"domain": domain})]
    else:
        rows = [tuple(r) for r in session.execute(_BY_DOMAIN_WITH_SERVICE,
                                                  {"domain": domain, "service": service})]
    return _shop_of(rows, domain, admin, service)


def lookup_shop(db: Database, domain: str, *, admin: bool = False,
                service: str | None = None) -> ShopRef:
    """:func:`installed_shop` for a request's authentication, outside any session: the
    one statement on a pooled connection (:meth:`Database.rows`), which costs a third of
    the CPU of the same statement through an ORM session -- and every storefront and
    admin request runs it."""
    if service is None:
        rows = db.rows(_BY_DOMAIN, {"domain": domain})
    else:
        rows = db.rows(_BY_DOMAIN_WITH_SERVICE, {"domain": domain, "service": service})
    return _shop_of(rows, domain, admin, service)


def _shop_of(rows: Sequence[tuple[Any, ...]], domain: str, admin: bool,
             service: str | None) -> ShopRef:
    # The columns of _BY_DOMAIN(_WITH_SERVICE): id, domain, timezone, installed,
    # catalog_version[, expert_id, claim_version].
    if not rows or not rows[0][3]:
        if admin:
            raise ShopNotInstalled(f"the shop {domain} has not installed consultbook")
        raise UnknownShop(f"the shop {domain} has not installed consultbook")
    shop_id, shop_domain, tz, _, catalog = rows[0][:5]
    claims = None
    if service is not None:
        linked = frozenset(r[5] for r in rows if r[5] is not None)
        versions = tuple(sorted((r[5], int(r[6])) for r in rows
                                if r[5] is not None and r[6] is not None))
        claims = ClaimVersions(service, linked, versions)
    return ShopRef(shop_id, shop_domain, tz, int(catalog or 0), claims)


def _provider(choices: tuple[str, ...]) -> Any:
    def parse(name: str, value: Any) -> str:
        chosen: str = text(64)(name, value)
        if chosen not in choices:
            raise ValidationError(f"{name} must be one of {', '.join(choices)}", field=name)
        return chosen

    return parse


def _reminders(name: str, value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) > 10:
        raise ValidationError(f"{name} must be a list of at most 10 minute offsets", field=name)
    out: set[int] = set()
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 60 * 24 * 60:
            raise ValidationError(
                f"{name} must hold whole numbers of minutes between 1 and 86400", field=name)
        out.add(v)
    return sorted(out, reverse=True)


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false", field=name)
    return value


SETTINGS_FIELDS: dict[str, Field] = {
    "timezone": Field(timezone, default=None),  # None: keep the shop's current timezone
    "calendar_provider": Field(_provider(CALENDAR_PROVIDERS), default="local"),
    "video_provider": Field(_provider(VIDEO_PROVIDERS), default="none"),
    "mail_provider": Field(_provider(MAIL_PROVIDERS), default="outbox"),
    "reminders": Field(_reminders, default=lambda: list(DEFAULT_REMINDERS)),
    # Refund undeliverable line items through Shopify too (needs the write_orders scope).
    "auto_refund": Field(_boolean, default=False),
    # How long an unpaid (pending) booking keeps its slot; then the slot is free again.
    "pending_hold_hours": Field(integer(1, 720), default=48),
    # What a customer may do from the manage link, and until how long before the start
    # (engine.services.manage); a booking is moved at most ``max_reschedules`` times.
    "customer_cancel": Field(_boolean, default=True),
    "customer_reschedule": Field(_boolean, default=True),
    "cancel_notice_minutes": Field(integer(0, 525600), default=1440),
    "reschedule_notice_minutes": Field(integer(0, 525600), default=1440),
    "max_reschedules": Field(integer(0, 100), default=2),
    # Mail the expert about each new booking, reschedule and cancellation of theirs.
    "notify_experts": Field(_boolean, default=True),
}


def _render_settings(shop: Shop, settings: ShopSettings) -> dict[str, Any]:
    return {
        "timezone": shop.timezone,
        "calendar_provider": settings.calendar_provider,
        "video_provider": settings.video_provider,
        "mail_provider": settings.mail_provider,
        "reminders": list(settings.reminders),
        "auto_refund": bool(settings.auto_refund),
        "pending_hold_hours": int(settings.pending_hold_hours or 48),
        "customer_cancel": _flag(settings.customer_cancel),
        "customer_reschedule": _flag(settings.customer_reschedule),
        "cancel_notice_minutes": _minutes(settings.cancel_notice_minutes),
        "reschedule_notice_minutes": _minutes(settings.reschedule_notice_minutes),
        "max_reschedules": 2 if settings.max_reschedules is None
        else int(settings.max_reschedules),
        "notify_experts": _flag(settings.notify_experts),
    }


def _flag(value: bool | None) -> bool:
    """A policy switch: on unless turned off (a row written before it existed is on)."""
    return True if value is None else bool(value)


def _minutes(value: int | None) -> int:
    return 1440 if value is None else int(value)


def _load(session: Session, shop_id: str) -> tuple[Shop, ShopSettings]:
    shop = session.get(Shop, shop_id)
    settings = session.get(ShopSettings, shop_id)
    if shop is None or settings is None:
        raise NotFound("no such shop")
    return shop, settings


def settings_fields(providers: Mapping[str, Sequence[str]] | None) -> dict[str, Field]:
    """The settings document's fields; with ``providers`` (kind -> registered names, from
    the plugin registry) a third-party provider may be chosen too."""
    if not providers:
        return SETTINGS_FIELDS
    fields = dict(SETTINGS_FIELDS)
    for kind in ("calendar", "video", "mail"):
        names = tuple(sorted(set(providers.get(kind, ()))))
        if names:
            default = SETTINGS_FIELDS[f"{kind}_provider"].default
            fields[f"{kind}_provider"] = Field(_provider(names), default=default)
    return fields


def get_settings(db: Database, shop_id: str) -> dict[str, Any]:
    with db.read() as session:
        return _render_settings(*_load(session, shop_id))


def update_settings(db: Database, shop_id: str, doc: Any, mode: Mode,
                    providers: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """PUT (``replace``) or PATCH (``update``) the settings document."""
    values = parse_document(doc, settings_fields(providers), mode)
    with db.write() as session:
        shop, settings = _load(session, shop_id)
        tz = values.pop("timezone", None)
        if tz is not None:
            shop.timezone = tz
        for name, value in values.items():
            setattr(settings, name, value)
        session.flush()
        return _render_settings(shop, settings)
