"""The plugin manager: discovery, blocking, validation, and the registries it fills.

Loading (:func:`load_plugins`): every ``consultbook.plugins`` entry point -- the
built-in plugins too, which pyproject.toml declares exactly like a third party's -- plus
``extra`` ``(name, plugin)`` pairs (tests, embedding apps), all through ``pm.register``.
Names listed in ``CONSULTBOOK_DISABLE_PLUGINS`` are blocked first; an implementation of
an unknown hook fails loading; ``CONSULTBOOK_TRACE_PLUGINS`` logs every hook call.

Then the registration hooks fill a :class:`PluginSet`: providers and connectors, periodic
jobs, routes, secret columns and migration folders. This module is part of the plugin
contract: it imports no service, no wiring and no store; what turns a registered
provider into an instance for a shop (credentials, settings, idempotency tables) is
:mod:`engine.services.providers`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from engine import hookspecs
from engine.config import Config
from engine.hookspecs import hookimpl
from engine.providers.base import VideoProvider
from engine.providers.registry import (
    KINDS,
    JobRegistry,
    PluginError,
    ProviderRegistry,
    RouteRegistry,
    SecretRegistry,
)
from engine.providers.retry import RetryPolicy
from engine.providers.types import BookingDetails, Meeting

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PluginError",
    "PluginSet",
    "ProviderRegistry",
    "build_jobs",
    "build_registry",
    "build_routes",
    "build_secrets",
    "load_plugins",
    "make_plugin_manager",
    "migration_locations",
    "plugin_migration_locations",
    "retry_policy",
]

log = logging.getLogger("consultbook.plugins")

ENTRY_POINT_GROUP = "consultbook.plugins"



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


def make_plugin_manager(config: Config, *, entrypoints: bool = True,
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
class PluginSet:
    """Everything the loaded plugins registered (one per process; see ``bootstrap``)."""

    pm: pluggy.PluginManager
    providers: ProviderRegistry
    jobs: JobRegistry
    routes: RouteRegistry
    secrets: SecretRegistry
    migration_locations: tuple[str, ...]

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def plugin_names(self) -> list[str]:
        """The loaded plugins (blocked names are listed by pluggy with no plugin)."""
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)


def load_plugins(config: Config, *, entrypoints: bool = True,
                 extra: Iterable[tuple[str, object]] = ()) -> PluginSet:
    """Discover, load and validate the plugins, and collect what they register.

    Raises :class:`PluginError` with one line naming the plugin that failed."""
    pm = make_plugin_manager(config, entrypoints=entrypoints, extra=extra)
    return PluginSet(pm=pm, providers=build_registry(pm), jobs=build_jobs(pm),
                     routes=build_routes(pm), secrets=build_secrets(pm),
                     migration_locations=migration_locations(pm))


def plugin_migration_locations(config: Config) -> tuple[str, ...]:
    """The migration folders of the plugins ``config`` loads (``consultbook migrate``).

    A plugin that fails to load cannot say what its tables are: it is left out (with a
    warning) so the others' schema can still be brought up; every other command refuses
    to start until it is fixed, uninstalled or disabled."""
    try:
        return migration_locations(make_plugin_manager(config))
    except PluginError as exc:
        log.warning("%s; migrating the other plugins", exc)
    found: list[str] = []
    for ep in discovered_entry_points():
        if ep.name in config.disabled_plugins:
            continue
        try:
            pm = make_plugin_manager(config.with_(disabled_plugins=tuple(
                e.name for e in discovered_entry_points() if e.name != ep.name)))
            found.extend(p for p in migration_locations(pm) if p not in found)
        except PluginError:
            continue
    return tuple(found)
