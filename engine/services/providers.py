"""The provider host: turns what plugins registered into instances for a shop, and lends
plugins what the contract promises (storage, secrets, settings, experts, invalidation).

:class:`Plugins` is the typed facade the engine calls (one per process, built by
``engine.bootstrap``)::

    plugins.calendar_for(shop).create_event(details, meeting)
    plugins.video_for(shop).create_meeting(details)    # at most one meeting per booking
    plugins.mailer_for(shop).send(message)             # hook headers, idempotency keys

It builds a provider instance with a :class:`~engine.providers.ProviderContext`: the
shop's connection (``engine.services.connections.open_connection``), its stored
settings for that provider (``provider_settings``), the keyring as
:class:`~engine.providers.Secrets`, and ``invalidate_busy``. :class:`Host` is the
:class:`~engine.providers.PluginHost` that plugin jobs and routes receive.

The manager (:mod:`engine.plugins`) knows none of this: the contract imports no service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine.clock import Clock
from engine.config import Config
from engine.crypto import CryptoError, Keyring
from engine.errors import NotFound, ValidationError
from engine.plugins import PluginSet, load_plugins, retry_policy
from engine.providers.base import (
    CalendarProvider,
    Connector,
    FormField,
    MailProvider,
    Provider,
    ProviderChoice,
    ProviderContext,
    VideoProvider,
)
from engine.providers.errors import ConnectionBroken, ProviderNotConfigured
from engine.providers.registry import Job, ProviderRegistry
from engine.providers.storage import ExpertInfo
from engine.providers.types import BookingDetails, MailMessage, Meeting
from engine.services.shops import ShopRef
from engine.store import Database
from engine.store.models import Expert, Shop, ShopSettings
from engine.store.providers_models import (
    PluginJobRun,
    ProviderConnection,
    ProviderMeeting,
    ProviderSettings,
    SentMessage,
)

log = logging.getLogger("consultbook.plugins")

P = TypeVar("P", bound=Provider)
MAX_SETTING = 2000
#: engine.services.freebusy.RedisBusyCache.prefix (not imported: freebusy builds on this
#: module, so importing it back would be a cycle).


CONNECTED, BROKEN = "connected", "broken"


def credentials_aad(connection_id: str) -> str:
    return f"connection:{connection_id}:credentials"


class StoredConnection:
    """A :class:`~engine.providers.ConnectionHandle` over one ``provider_connections`` row."""

    def __init__(self, plugins: Plugins, shop: ShopRef, row: ProviderConnection) -> None:
        self._plugins, self.shop = plugins, shop
        self.id, self.provider, self.account = row.id, row.provider, row.account
        token = row.credentials
        try:
            self._credentials: dict[str, Any] = (
                json.loads(plugins.keyring.decrypt_str(token, aad=credentials_aad(row.id)))
                if token else {})
        except CryptoError:
            # A key that encrypted these credentials was dropped: the connection is as
            # good as broken (the merchant reconnects); it is not the request's fault.
            raise ConnectionBroken(
                f"the stored {row.provider} credentials cannot be decrypted with the "
                "configured keys (reconnect it in the app's settings)",
                provider=row.provider) from None

    def credentials(self) -> dict[str, Any]:
        return dict(self._credentials)

    def save(self, credentials: dict[str, Any]) -> None:
        if credentials == self._credentials:
            return
        token = self._plugins.keyring.encrypt(json.dumps(credentials, sort_keys=True),
                                              aad=credentials_aad(self.id))
        with self._plugins.db.write() as session:
            row = session.get(ProviderConnection, self.id)
            if row is None:  # disconnected meanwhile: nothing to keep
                return
            row.credentials = token
            row.updated_at = self._plugins.clock.now()
        self._credentials = dict(credentials)

    def mark_broken(self, reason: str) -> None:
        mark_broken(self._plugins, self.shop, self.provider, reason)


def open_connection(plugins: Plugins, shop: ShopRef, provider: str) -> StoredConnection:
    """The shop's working connection to ``provider``.

    Raises ProviderNotConfigured when the shop never connected, ConnectionBroken when the
    grant was revoked (the merchant must reconnect).
    """
    with plugins.db.read() as session:
        row = session.scalars(select(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id,
            ProviderConnection.provider == provider)).one_or_none()
    if row is None:
        raise ProviderNotConfigured(f"the shop has not connected its {provider} account "
                                    "(connect it in the app's settings)")
    if row.status != CONNECTED:
        raise ConnectionBroken(f"the {provider} connection is broken: {row.error} "
                               "(reconnect it in the app's settings)", provider=provider)
    return StoredConnection(plugins, shop, row)


def mark_broken(plugins: Plugins, shop: ShopRef, provider: str, reason: str) -> None:
    """Record that the shop's grant no longer works; the merchant sees ``reason``."""
    now = plugins.clock.now()
    changed = False
    with plugins.db.write() as session:
        row = session.scalars(select(ProviderConnection).where(
            ProviderConnection.shop_id == shop.id,
            ProviderConnection.provider == provider)).one_or_none()
        if row is not None and (row.status != BROKEN or row.error != reason):
            changed = row.status != BROKEN
            row.status, row.error, row.updated_at = BROKEN, reason[:2000], now
            row.broken_at = row.broken_at or now
    if changed:
        log.warning("the %s connection of %s is broken: %s", provider, shop.domain, reason)
        plugins.connection_changed(shop.domain, provider, BROKEN, reason)



class KeyringSecrets:
    """:class:`~engine.providers.Secrets` over the deployment's keyring."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def encrypt(self, plaintext: str, *, aad: str) -> str:
        return self._keyring.encrypt(plaintext, aad=aad)

    def decrypt(self, token: str, *, aad: str) -> str:
        # A token no configured key decrypts raises engine.crypto.CryptoError, which the
        # web layer answers as 409 reconnect_required (never a 500).
        return self._keyring.decrypt_str(token, aad=aad)


@dataclass(frozen=True)
class ShopProviders:
    shop: ShopRef
    choice: ProviderChoice


class VideoFacade:
    """What ``video_for`` returns: ``create_meeting`` remembered per booking.

    ``provider`` is ``None`` when the shop has no video, or when its calendar makes the
    meeting inside the event (``embedded``); ``create_meeting`` then returns ``None``.
    """

    def __init__(self, plugins: Plugins, shop: ShopRef, name: str,
                 provider: VideoProvider | None, *, embedded: bool) -> None:
        self._plugins, self.shop, self.name = plugins, shop, name
        self.provider, self.embedded = provider, embedded

    def create_meeting(self, booking: BookingDetails) -> Meeting | None:
        if self.provider is None:
            return None
        db, clock = self._plugins.db, self._plugins.clock
        with db.read() as session:
            row = session.get(ProviderMeeting, (booking.booking_id, self.name))
            if row is not None:
                return Meeting(url=row.url, id=row.meeting_id, provider=self.name)
        meeting = self.provider.create_meeting(booking)
        if meeting is None:
            return None
        try:
            with db.write() as session:
                session.add(ProviderMeeting(booking_id=booking.booking_id, provider=self.name,
                                            shop_id=self.shop.id, meeting_id=meeting.id,
                                            url=meeting.url, created_at=clock.now()))
        except IntegrityError:
            # Another attempt won the race; use its meeting so both agree.
            with db.read() as session:
                row = session.get(ProviderMeeting, (booking.booking_id, self.name))
                assert row is not None
                return Meeting(url=row.url, id=row.meeting_id, provider=self.name)
        return meeting

    def delete_meeting(self, meeting: Meeting) -> None:
        if self.provider is not None:
            self.provider.delete_meeting(meeting)


class Mailer:
    """What ``mailer_for`` returns: hook headers added, sends deduplicated by
    ``MailMessage.idempotency_key``."""

    def __init__(self, plugins: Plugins, shop: ShopRef, provider: MailProvider) -> None:
        self._plugins, self.shop, self.provider = plugins, shop, provider

    @property
    def idempotent(self) -> bool:
        """Whether the provider delivers one idempotency key at most once."""
        return bool(self.provider.idempotent)

    def send(self, message: MailMessage) -> str:
        extra: dict[str, str] = {}
        for headers in reversed(self._plugins.pm.hook.consultbook_mail_headers(
                message=message, shop_domain=self.shop.domain)):
            extra.update(headers or {})
        if extra:
            message = replace(message, headers={**message.headers, **extra})
        db = self._plugins.db
        # A provider that dedups keys itself needs no bookkeeping here.
        key = None if self.provider.idempotent else message.idempotency_key
        if key:
            with db.read() as session:
                sent = session.get(SentMessage, f"{self.shop.id}:{key}")
                if sent is not None:
                    return sent.message_id
        message_id = self.provider.send(message)
        if key:
            try:
                with db.write() as session:
                    session.add(SentMessage(key=f"{self.shop.id}:{key}", shop_id=self.shop.id,
                                            provider=self.provider.name, message_id=message_id,
                                            sent_at=self._plugins.clock.now()))
            except IntegrityError:
                pass
        return message_id


class Plugins:
    """The typed facade over the loaded plugins. One per process (see ``bootstrap``)."""

    def __init__(self, loaded: PluginSet, *, config: Config, db: Database, keyring: Keyring,
                 clock: Clock) -> None:
        self.loaded = loaded
        self.pm, self.registry = loaded.pm, loaded.providers
        self.config, self.db, self.keyring, self.clock = config, db, keyring, clock
        self.retry = retry_policy(config)
        self.secrets = KeyringSecrets(keyring)

    @classmethod
    def load(cls, config: Config, db: Database, keyring: Keyring, clock: Clock, *,
             entrypoints: bool = True, extra: Iterable[tuple[str, object]] = ()) -> Plugins:
        loaded = load_plugins(config, entrypoints=entrypoints, extra=extra)
        return cls(loaded, config=config, db=db, keyring=keyring, clock=clock)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    @property
    def jobs(self) -> list[Job]:
        return list(self.loaded.jobs)

    def plugin_names(self) -> list[str]:
        return self.loaded.plugin_names()

    # --- per-shop lookup ------------------------------------------------------------

    def shop_providers(self, shop: ShopRef | str, session: Any = None) -> ShopProviders:
        """The shop (by ``ShopRef``, id or domain) and the providers its settings name
        (read in ``session`` when the caller has one open)."""
        key = shop.id if isinstance(shop, ShopRef) else shop
        cached: ShopProviders | None = self.db.cache.get(("shop_providers", key))
        if cached is not None:
            return cached
        column = Shop.domain if "." in key else Shop.id
        query = (select(Shop.id, Shop.domain, Shop.timezone, ShopSettings.calendar_provider,
                        ShopSettings.video_provider, ShopSettings.mail_provider)
                 .join(ShopSettings, ShopSettings.shop_id == Shop.id)
                 .where(column == key))
        if session is not None:
            row = session.execute(query).one_or_none()
        else:
            with self.db.lookup() as own:
                row = own.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"no shop {key!r}")
        found = ShopProviders(ShopRef(row.id, row.domain, row.timezone),
                              ProviderChoice(row.calendar_provider, row.video_provider,
                                             row.mail_provider))
        # Read-mostly: process-local, void after any local write, at most 1 s old.
        self.db.cache.put(("shop_providers", key), found)
        return found

    def _class(self, kind: str, name: str) -> type[Provider]:
        cls = self.registry.get(kind, name)
        if cls is None:
            known = ", ".join(self.registry.names(kind)) or "none"
            raise ProviderNotConfigured(
                f"the shop's {kind} provider {name!r} is not installed (installed: {known})")
        return cls

    def context(self, cls: type[Provider], sp: ShopProviders) -> ProviderContext:
        """The :class:`ProviderContext` provider class ``cls`` gets for the shop."""
        reason = cls.check_config(self.config)
        if reason:
            raise ProviderNotConfigured(f"the {cls.name} {cls.kind} provider is not "
                                        f"configured: {reason}")
        connection = None
        if cls.connection:
            connection = open_connection(self, sp.shop, cls.connection)
        return ProviderContext(shop=sp.shop, choice=sp.choice, config=self.config,
                               clock=self.clock, db=self.db, retry=self.retry,
                               connection=connection,
                               settings=self.settings_of(sp.shop.id, cls),
                               secrets=self.secrets, busy_invalidator=self.invalidate_busy)

    def instantiate(self, cls: type[P], sp: ShopProviders) -> P:
        """An instance of provider class ``cls`` for the shop, with its connection."""
        return cls(self.context(cls, sp))

    def calendar_for(self, shop: ShopRef | str) -> CalendarProvider:
        """The calendar provider the shop chose. Raises ProviderNotConfigured (missing
        plugin, no connection) or ConnectionBroken (the merchant must reconnect)."""
        sp = self.shop_providers(shop)
        cls = self._class("calendar", sp.choice.calendar)
        return self.instantiate(cls, sp)  # type: ignore[return-value]

    def video_for(self, shop: ShopRef | str) -> VideoFacade:
        """The video provider the shop chose, behind a facade that makes at most one
        meeting per booking. When the shop's calendar embeds this video provider (Meet in
        Google Calendar, Teams in Outlook) there is nothing to make beforehand."""
        sp = self.shop_providers(shop)
        name = sp.choice.video
        calendar = self.registry.get("calendar", sp.choice.calendar)
        if name == "none" or (calendar is not None and name in
                              getattr(calendar, "embeds_video", frozenset())):
            return VideoFacade(self, sp.shop, name, None, embedded=name != "none")
        cls = self._class("video", name)
        return VideoFacade(self, sp.shop, name, self.instantiate(cls, sp),  # type: ignore[arg-type]
                           embedded=False)

    def mailer_for(self, shop: ShopRef | str) -> Mailer:
        """The mail provider the shop chose, behind a facade that adds plugin headers and
        sends each ``idempotency_key`` once."""
        sp = self.shop_providers(shop)
        cls = self._class("mail", sp.choice.mail)
        return Mailer(self, sp.shop, self.instantiate(cls, sp))  # type: ignore[arg-type]

    def connector(self, name: str) -> Connector:
        cls = self.registry.connector(name)
        if cls is None:
            raise NotFound(f"no account provider {name!r} (known: "
                           f"{', '.join(self.registry.connector_names()) or 'none'})")
        reason = cls.check_config(self.config)
        if reason:
            raise ProviderNotConfigured(f"{cls.label or cls.name} is not configured: {reason}")
        return cls(self.config, self.retry)

    def connection_changed(self, shop_domain: str, provider: str, status: str,
                           reason: str | None) -> None:
        """Tell plugins a connection changed; their failures are logged, never raised."""
        for impl in self.pm.hook.consultbook_connection_changed.get_hookimpls():
            try:
                impl.function(shop_domain=shop_domain, provider=provider, status=status,
                              reason=reason)
            except Exception:
                log.exception("plugin %s failed in consultbook_connection_changed",
                              impl.plugin_name)

    # --- per-shop provider settings ---------------------------------------------------

    def settings_of(self, shop_id: str, cls: type[Provider]) -> Mapping[str, str]:
        """The shop's values of ``cls.settings`` (every declared name; ``""`` if unset)."""
        if not cls.settings:
            return {}
        key = ("provider_settings", shop_id, cls.kind, cls.name)
        cached: Mapping[str, str] | None = self.db.cache.get(key)
        if cached is None:
            with self.db.lookup() as session:
                row = session.get(ProviderSettings, (shop_id, cls.kind, cls.name))
                stored = dict(row.values) if row is not None else {}
            cached = {f.name: str(stored.get(f.name, "")) for f in cls.settings}
            self.db.cache.put(key, cached)
        return dict(cached)

    def save_settings(self, shop: ShopRef, kind: str, name: str,
                      values: Any) -> Mapping[str, str]:
        """Validate ``values`` against the provider's declared settings and store them.

        Unknown names, non-text values, over-long values and missing required ones are a
        ValidationError naming the field; nothing is written then."""
        cls = self.registry.get(kind, name) if kind in ("calendar", "video", "mail") else None
        if cls is None:
            raise NotFound(f"no {kind} provider {name!r}")
        clean = validate_form(cls.settings, values)
        with self.db.write() as session:
            row = session.get(ProviderSettings, (shop.id, kind, name))
            if row is None:
                session.add(ProviderSettings(shop_id=shop.id, kind=kind, provider=name,
                                             values=clean, updated_at=self.clock.now()))
            else:
                row.values, row.updated_at = clean, self.clock.now()
        return self.settings_of(shop.id, cls)

    # --- busy time --------------------------------------------------------------------

    #: Set by the composition root to the free/busy cache's invalidation
    #: (engine.services.freebusy.FreeBusy.invalidate): the one place that knows the
    #: cache in use (Redis or the database) and its keys.
    busy_invalidator: Callable[[str, str | None], None] | None = None

    def invalidate_busy(self, shop_id: str, expert_id: str | None = None) -> None:
        """Forget the cached free/busy of one expert of the shop, or of all its experts;
        the next availability request refetches."""
        if self.busy_invalidator is None:
            log.warning("no free/busy cache is wired; nothing to invalidate")
            return
        self.busy_invalidator(shop_id, expert_id)


def validate_form(fields: Iterable[FormField], values: Any) -> dict[str, str]:
    """``values`` checked against declared ``fields``: a JSON object of strings, no unknown
    names, required ones non-blank, at most 2000 characters each. Returns every declared
    field (``""`` for an optional one left out)."""
    declared = {f.name: f for f in fields}
    if not isinstance(values, dict):
        raise ValidationError("values must be a JSON object of field names to text",
                              field="values")
    for name in values:
        if name not in declared:
            raise ValidationError(f"unknown field {name!r}", field=str(name)[:64])
    clean: dict[str, str] = {}
    for name, spec in declared.items():
        value = values.get(name, "")
        if not isinstance(value, str):
            raise ValidationError(f"{spec.label or name} must be text", field=name)
        value = value.strip()
        if len(value) > MAX_SETTING:
            raise ValidationError(f"{spec.label or name} is too long", field=name)
        if spec.required and not value:
            raise ValidationError(f"{spec.label or name} is required", field=name)
        clean[name] = value
    return clean


def describe_fields(fields: Iterable[FormField]) -> list[dict[str, Any]]:
    """Fields as the admin renders them."""
    return [{"name": f.name, "label": f.label, "kind": f.kind, "required": f.required,
             "help": f.help, "placeholder": f.placeholder} for f in fields]


class Host:
    """The :class:`~engine.providers.PluginHost` plugin jobs and route factories get."""

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins

    @property
    def clock(self) -> Clock:
        return self._plugins.clock

    @property
    def config(self) -> Config:
        return self._plugins.config

    @property
    def db(self) -> Database:
        return self._plugins.db

    @property
    def secrets(self) -> KeyringSecrets:
        return self._plugins.secrets

    def option(self, name: str, default: Any = None) -> Any:
        return getattr(self._plugins.config, name, default)

    def shops(self) -> Iterator[ShopRef]:
        with self.db.read() as session:
            rows = session.execute(select(Shop.id, Shop.domain, Shop.timezone)
                                   .where(Shop.installed.is_(True)).order_by(Shop.id)).all()
        return iter([ShopRef(r.id, r.domain, r.timezone) for r in rows])

    def _registered(self, kind: str, name: str) -> type[Provider]:
        cls = self._plugins.registry.get(kind, name) if kind in ProviderRegistry._bases else None
        if cls is None:
            raise LookupError(f"no {kind} provider {name!r} is registered")
        return cls

    def contexts(self, *, kind: str, name: str) -> Iterator[ProviderContext]:
        cls = self._registered(kind, name)
        column = {"calendar": ShopSettings.calendar_provider,
                  "video": ShopSettings.video_provider, "mail": ShopSettings.mail_provider}[kind]
        with self.db.read() as session:
            ids = list(session.scalars(
                select(Shop.id).join(ShopSettings, ShopSettings.shop_id == Shop.id)
                .where(Shop.installed.is_(True), column == name).order_by(Shop.id)))
        for shop_id in ids:
            try:
                yield self._plugins.context(cls, self._plugins.shop_providers(shop_id))
            except (ProviderNotConfigured, NotFound) as exc:
                log.info("skipping shop %s for %s %s: %s", shop_id, kind, name, exc)
            except Exception as exc:  # a broken grant: skipped, the merchant sees it
                log.warning("skipping shop %s for %s %s: %s", shop_id, kind, name, exc)

    def context_for(self, shop_id: str, kind: str, name: str) -> ProviderContext:
        cls = self._registered(kind, name)
        try:
            sp = self._plugins.shop_providers(shop_id)
        except NotFound:
            raise LookupError(f"no shop {shop_id!r}") from None
        return self._plugins.context(cls, sp)

    def expert(self, shop_id: str, expert_id: str) -> ExpertInfo | None:
        with self.db.read() as session:
            row = session.execute(
                select(Expert.id, Expert.shop_id, Expert.name, Expert.email,
                       Expert.timezone, Shop.timezone.label("shop_tz"))
                .join(Shop, Shop.id == Expert.shop_id)
                .where(Expert.id == expert_id, Expert.shop_id == shop_id,
                       Expert.deleted_at.is_(None))).one_or_none()
        if row is None:
            return None
        return ExpertInfo(row.id, row.shop_id, row.name, row.email,
                          row.timezone or row.shop_tz)

    def experts(self, shop_id: str) -> list[ExpertInfo]:
        # One query for the whole shop (a push-sync job walks every expert of a shop).
        with self.db.read() as session:
            rows = session.execute(
                select(Expert.id, Expert.shop_id, Expert.name, Expert.email,
                       Expert.timezone, Shop.timezone.label("shop_tz"))
                .join(Shop, Shop.id == Expert.shop_id)
                .where(Expert.shop_id == shop_id, Expert.deleted_at.is_(None))
                .order_by(Expert.id)).all()
        return [ExpertInfo(r.id, r.shop_id, r.name, r.email, r.timezone or r.shop_tz)
                for r in rows]

    def invalidate_busy(self, shop_id: str, expert_id: str | None = None) -> None:
        self._plugins.invalidate_busy(shop_id, expert_id)


def claim_job_run(db: Database, job: Job, now: Any, owner: str) -> bool:
    """Whether this process runs ``job`` now: true for exactly one caller per period,
    across processes. The claim is one compare-and-set on ``plugin_job_runs`` (insert
    the row, or move ``started_at`` forward only if a whole period has passed), so two
    schedulers racing both read the old value but only one UPDATE matches."""
    from datetime import timedelta

    due_before = now - timedelta(seconds=job.every_seconds * 0.95)
    with db.write() as session:
        row = session.get(PluginJobRun, job.name)
        if row is None:
            try:
                with session.begin_nested():
                    session.add(PluginJobRun(name=job.name, started_at=now, owner=owner))
                return True
            except IntegrityError:
                pass
        from sqlalchemy import update

        result = session.execute(
            update(PluginJobRun).where(PluginJobRun.name == job.name,
                                       PluginJobRun.started_at <= due_before)
            .values(started_at=now, owner=owner).execution_options(synchronize_session=False))
        return bool(getattr(result, "rowcount", 0) == 1)


def run_plugin_job(plugins: Plugins, job: Job, owner: str, *,
                   claim: bool = True) -> Mapping[str, Any] | None:
    """Run one plugin job if this process wins its period (``claim``); its failure is
    logged and swallowed (the job runs again next period)."""
    if claim and not claim_job_run(plugins.db, job, plugins.clock.now(), owner):
        return {"skipped": 1}
    try:
        result = job.run(Host(plugins))
    except Exception:
        log.exception("plugin job %s of %s failed", job.name, job.plugin)
        return {"failed": 1}
    return dict(result) if result else {}

