"""The plugin manager, the provider registry, and the typed facade the engine calls.

Loading (:meth:`Plugins.load`): every ``consultbook.plugins`` entry point, then any
built-in not already loaded that way (so a source checkout without installed entry
points still works) -- both through ``pm.register`` exactly like third-party plugins.
Names listed in ``CONSULTBOOK_DISABLE_PLUGINS`` are blocked first; an implementation of
an unknown hook fails loading; ``CONSULTBOOK_TRACE_PLUGINS`` logs every hook call.

Then ``consultbook_register_providers`` fills a :class:`ProviderRegistry`, and the engine
asks the facade for the provider each shop chose::

    plugins.calendar_for(shop).create_event(details, meeting)
    plugins.video_for(shop).create_meeting(details)
    plugins.mailer_for(shop).send(message)
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from engine import hookspecs
from engine.errors import NotFound
from engine.hookspecs import hookimpl
from engine.providers.base import (
    CalendarProvider,
    Connector,
    MailProvider,
    Provider,
    ProviderChoice,
    ProviderContext,
    VideoProvider,
)
from engine.providers.errors import ProviderNotConfigured
from engine.providers.registry import (
    KINDS,
    JobRegistry,
    PluginError,
    ProviderRegistry,
    RouteRegistry,
    SecretRegistry,
)
from engine.providers.retry import RetryPolicy
from engine.providers.types import BookingDetails, MailMessage, Meeting

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.clock import Clock
    from engine.config import Config
    from engine.crypto import Keyring
    from engine.services.shops import ShopRef
    from engine.store import Database

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PluginError",
    "ProviderRegistry",
    "build_jobs",
    "build_registry",
    "build_routes",
    "build_secrets",
    "make_plugin_manager",
    "migration_locations",
]

log = logging.getLogger("consultbook.plugins")

ENTRY_POINT_GROUP = "consultbook.plugins"

#: Built-in plugins: (name, module). Registered like third-party plugins; the names are
#: the entry-point names in pyproject.toml, so each loads once either way.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("calendar_local", "plugins.calendar_local"),
    ("mail_outbox", "plugins.mail_outbox"),
    ("mail_smtp", "plugins.mail_smtp"),
    ("calendar_google", "plugins.calendar_google"),
    ("video_meet", "plugins.video_meet"),
    ("calendar_outlook", "plugins.calendar_outlook"),
)

P = TypeVar("P", bound=Provider)


class _Core:
    """The engine's own providers: ``none`` (no video)."""

    @hookimpl
    def consultbook_register_providers(self, registry: ProviderRegistry) -> None:
        registry.add_video(NoVideo)


class NoVideo(VideoProvider):
    """No video meeting (the default)."""

    name = "none"
    label = "No video"

    def create_meeting(self, booking: BookingDetails) -> Meeting | None:
        return None


def retry_policy(config: Config) -> RetryPolicy:
    """The retry policy every provider call uses, from the configuration."""
    return RetryPolicy(attempts=config.provider_attempts, base=config.provider_backoff_seconds,
                       cap=config.provider_max_backoff_seconds,
                       max_retry_after=config.provider_max_retry_after_seconds,
                       timeout=config.provider_timeout_seconds)


# --- discovery, once per process ------------------------------------------------------
#
# Reading the entry points and importing the plugins happens once per process: every
# Context built later (each periodic job, each CLI step) reuses what the first one found.
# So a plugin installed into a running deployment takes effect at the next restart, and
# if it is broken that restart refuses to start with one line naming it -- instead of
# every job importing it again and logging the same traceback every few minutes. A fork
# (gunicorn, Celery prefork) inherits the memo with the imported modules it describes.

_discovery_lock = threading.RLock()
_entry_points: tuple[EntryPoint, ...] | None = None
#: "name=target" -> the loaded plugin object, or the PluginError its loading raised.
_loaded: dict[str, object] = {}
#: How many times the entry-point group was read (tests assert it stays 1).
discovery_count = 0


def discovered_entry_points() -> tuple[EntryPoint, ...]:
    """The ``consultbook.plugins`` entry points, read from the installed distributions
    the first time this is called in the process and remembered after that."""
    global _entry_points, discovery_count
    with _discovery_lock:
        if _entry_points is None:
            _entry_points = tuple(entry_points(group=ENTRY_POINT_GROUP))
            discovery_count += 1
        return _entry_points


def _load_failure(name: str, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return (f"plugin {name!r} failed to load: {type(exc).__name__}"
            + (f": {first}" if first else "")
            + " (fix or uninstall it, or list it in CONSULTBOOK_DISABLE_PLUGINS)")


def _load_once(key: str, load: Callable[[], object]) -> object:
    """``load()`` the first time ``key`` is asked for; the same object (or the same
    PluginError, re-raised) every time after. A blocked plugin is never asked for, so
    it is never imported."""
    with _discovery_lock:
        if key not in _loaded:
            try:
                _loaded[key] = load()
            except Exception as exc:
                # Remembered as one line: the process refuses to start with it (the
                # CLI prints it), and any later attempt says the same without
                # importing the plugin again or growing a traceback.
                _loaded[key] = PluginError(_load_failure(key.split("=", 1)[0], exc))
        found = _loaded[key]
    if isinstance(found, PluginError):
        raise PluginError(str(found)) from None
    return found


def reset_discovery() -> None:
    """Forget what was discovered, so the next plugin manager reads the entry points and
    imports the plugins again (tests; an embedding app that installs plugins live)."""
    global _entry_points
    with _discovery_lock:
        _entry_points = None
        _loaded.clear()


def make_plugin_manager(config: Config, *, entrypoints: bool = True, builtins: bool = True,
                        extra: Iterable[tuple[str, object]] = ()) -> pluggy.PluginManager:
    """A plugin manager with the hookspecs, the blocked names, and every plugin loaded.

    ``extra`` registers more ``(name, plugin)`` pairs (tests, embedding apps).
    Raises :class:`PluginError` with one line naming the plugin that failed.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in config.disabled_plugins:
        pm.set_blocked(name)
    if config.trace_plugins:
        pm.trace.root.setwriter(log.info)
        pm.enable_tracing()

    def register(name: str, load: Any) -> None:
        """Load and register one plugin unless blocked or already there."""
        if pm.is_blocked(name) or pm.get_plugin(name) is not None:
            return
        try:
            plugin = load()
            pm.register(plugin, name=name)
        except PluginError:
            raise
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from None
        except Exception as exc:
            raise PluginError(_load_failure(name, exc)) from None

    register("core", lambda: _Core())
    if entrypoints:
        for ep in discovered_entry_points():
            register(ep.name, lambda ep=ep: _load_once(f"{ep.name}={ep.value}", ep.load))
    if builtins:
        for name, module in DEFAULT_PLUGINS:
            register(name, lambda name=name, module=module: _load_once(
                f"{name}={module}", lambda: importlib.import_module(module)))
    for name, plugin in extra:
        register(name, lambda plugin=plugin: plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from None
    return pm


def _fill(pm: pluggy.PluginManager, hook: str, arg: str, registry: Any) -> Any:
    # Called per plugin so the registry can say who registered what.
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        registry.current_plugin = impl.plugin_name
        impl.function(**{arg: registry})
    registry.current_plugin = ""
    return registry


def build_registry(pm: pluggy.PluginManager) -> ProviderRegistry:
    """The providers and connectors every plugin registered."""
    registry: ProviderRegistry = _fill(pm, "consultbook_register_providers", "registry",
                                       ProviderRegistry())
    return registry


def build_jobs(pm: pluggy.PluginManager) -> JobRegistry:
    """The periodic jobs every plugin asked for."""
    jobs: JobRegistry = _fill(pm, "consultbook_register_jobs", "jobs", JobRegistry())
    return jobs


def build_routes(pm: pluggy.PluginManager) -> RouteRegistry:
    """The HTTP routes every plugin serves."""
    routes: RouteRegistry = _fill(pm, "consultbook_register_routes", "routes",
                                  RouteRegistry())
    return routes


def build_secrets(pm: pluggy.PluginManager) -> SecretRegistry:
    """The encrypted columns of plugins' tables."""
    secrets: SecretRegistry = _fill(pm, "consultbook_register_secrets", "secrets",
                                    SecretRegistry())
    return secrets


def migration_locations(pm: pluggy.PluginManager) -> tuple[str, ...]:
    """Every plugin's folders of Alembic version scripts (absolute paths, in plugin order)."""
    found: list[str] = []
    for impl in reversed(pm.hook.consultbook_migration_locations.get_hookimpls()):
        locations: Any = impl.function() or ()
        for location in locations:
            path = str(location)
            if not os.path.isabs(path) or not os.path.isdir(path):
                raise PluginError(f"plugin {impl.plugin_name!r} names a migration folder "
                                  f"that is not an existing absolute directory: {path!r}")
            if path not in found:
                found.append(path)
    return tuple(found)


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
        from engine.store.providers_models import ProviderMeeting

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

    def send(self, message: MailMessage) -> str:
        from engine.store.providers_models import SentMessage

        extra: dict[str, str] = {}
        for headers in reversed(self._plugins.pm.hook.consultbook_mail_headers(
                message=message, shop_domain=self.shop.domain)):
            extra.update(headers or {})
        if extra:
            message = replace(message, headers={**message.headers, **extra})
        db = self._plugins.db
        key = message.idempotency_key
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
    """The typed facade over the plugin manager. One per process (see ``bootstrap``)."""

    def __init__(self, pm: pluggy.PluginManager, registry: ProviderRegistry, *, config: Config,
                 db: Database, keyring: Keyring, clock: Clock) -> None:
        self.pm, self.registry = pm, registry
        self.config, self.db, self.keyring, self.clock = config, db, keyring, clock
        self.retry = retry_policy(config)

    @classmethod
    def load(cls, config: Config, db: Database, keyring: Keyring, clock: Clock, *,
             entrypoints: bool = True, builtins: bool = True,
             extra: Iterable[tuple[str, object]] = ()) -> Plugins:
        pm = make_plugin_manager(config, entrypoints=entrypoints, builtins=builtins,
                                 extra=extra)
        return cls(pm, build_registry(pm), config=config, db=db, keyring=keyring, clock=clock)

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def plugin_names(self) -> list[str]:
        """The loaded plugins (blocked names are listed by pluggy with no plugin)."""
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)

    # --- per-shop lookup ------------------------------------------------------------

    def shop_providers(self, shop: ShopRef | str, session: Session | None = None
                       ) -> ShopProviders:
        """The shop (by ``ShopRef``, id or domain) and the providers its settings name
        (read in ``session`` when the caller has one open)."""
        from engine.services.shops import ShopRef as _ShopRef
        from engine.store.models import Shop, ShopSettings

        key = shop.id if isinstance(shop, _ShopRef) else shop
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
        found = ShopProviders(_ShopRef(row.id, row.domain, row.timezone),
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

    def instantiate(self, cls: type[P], sp: ShopProviders) -> P:
        """An instance of provider class ``cls`` for the shop, with its connection."""
        reason = cls.check_config(self.config)
        if reason:
            raise ProviderNotConfigured(f"the {cls.name} {cls.kind} provider is not "
                                        f"configured: {reason}")
        connection = None
        if cls.connection:
            from engine.services.connections import open_connection

            connection = open_connection(self, sp.shop, cls.connection)
        ctx = ProviderContext(shop=sp.shop, choice=sp.choice, config=self.config,
                              clock=self.clock, db=self.db, retry=self.retry,
                              connection=connection)
        return cls(ctx)

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
