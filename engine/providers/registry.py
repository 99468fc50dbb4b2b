"""The registries plugins fill in their registration hooks.

Each registration hook (see :mod:`engine.hookspecs`) is called once per plugin when the
plugin manager loads, with one of these objects:

* ``consultbook_register_providers(registry)`` -- :class:`ProviderRegistry`;
* ``consultbook_register_jobs(jobs)`` -- :class:`JobRegistry`;
* ``consultbook_register_routes(routes)`` -- :class:`RouteRegistry`;
* ``consultbook_register_secrets(secrets)`` -- :class:`SecretRegistry`.

A registration that can never work (a wrong base class, a bad name, two plugins with
the same name) raises :class:`PluginError`, which stops start-up with one line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from engine.errors import ConfigError
from engine.providers.base import (
    CalendarProvider,
    Connector,
    MailProvider,
    Provider,
    VideoProvider,
)
from engine.providers.host import PluginHost, RouteHost

__all__ = [
    "AUTH_SCHEMES",
    "KINDS",
    "Job",
    "JobRegistry",
    "PluginError",
    "ProviderRegistry",
    "Route",
    "RouteRegistry",
    "SecretColumn",
    "SecretRegistry",
]

KINDS = ("calendar", "video", "mail")
NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
#: How a plugin route is authenticated (see :class:`RouteRegistry`).
AUTH_SCHEMES = ("none", "admin", "proxy")
# Paths the engine serves itself; a plugin route may not shadow them.
_RESERVED = re.compile(r"/(healthz|readyz|static|demo|webhooks|install|auth)(/|$)")
_PATH = re.compile(r"(/[A-Za-z0-9._~-]+|/\{[a-z_][a-z0-9_]*\})+")


class PluginError(ConfigError):
    """A plugin failed to load or registered something invalid (stops start-up)."""

    code = "plugin_error"


class _Owned:
    """Remembers which plugin is registering (set by the manager around each call)."""

    def __init__(self) -> None:
        self.current_plugin = ""

    def _who(self) -> str:
        return self.current_plugin or "a plugin"


class ProviderRegistry(_Owned):
    """Named providers and connectors. Plugins add to it in
    ``consultbook_register_providers``; the engine looks them up by name."""

    _bases: Mapping[str, type[Provider]] = {
        "calendar": CalendarProvider, "video": VideoProvider, "mail": MailProvider}

    def __init__(self) -> None:
        super().__init__()
        self._providers: dict[str, dict[str, type[Provider]]] = {k: {} for k in KINDS}
        self._connectors: dict[str, type[Connector]] = {}
        self._owner: dict[tuple[str, str], str] = {}

    def _add(self, kind: str, cls: type[Provider]) -> type[Provider]:
        base = self._bases[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{self._who()} registered {cls!r} as a "
                              f"{kind} provider, but it is not a {base.__name__}")
        name = cls.name
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PluginError(f"{cls.__qualname__} needs a name like 'my_calendar' "
                              f"(lower case letters, digits, _ and -), got {name!r}")
        if name in self._providers[kind]:
            raise PluginError(f"two plugins register a {kind} provider named {name!r}: "
                              f"{self._owner[(kind, name)]} and {self.current_plugin}")
        names = [f.name for f in cls.settings]
        if len(set(names)) != len(names) or not all(NAME.fullmatch(n) for n in names):
            raise PluginError(f"{cls.__qualname__}.settings need distinct names like "
                              f"'calendar_path', got {names!r}")
        self._providers[kind][name] = cls
        self._owner[(kind, name)] = self.current_plugin
        return cls

    def add_calendar(self, cls: type[CalendarProvider]) -> type[CalendarProvider]:
        """Register a calendar provider class under ``cls.name``."""
        self._add("calendar", cls)
        return cls

    def add_video(self, cls: type[VideoProvider]) -> type[VideoProvider]:
        """Register a video provider class under ``cls.name``."""
        self._add("video", cls)
        return cls

    def add_mail(self, cls: type[MailProvider]) -> type[MailProvider]:
        """Register a mail provider class under ``cls.name``."""
        self._add("mail", cls)
        return cls

    def add_connector(self, cls: type[Connector]) -> type[Connector]:
        """Register a connector: an OAuth flow served at ``/auth/<cls.name>/start|callback``,
        or a :class:`~engine.providers.FormConnector` served at ``POST
        /admin/api/connections/<cls.name>`` with ``{"values": {...}}``."""
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise PluginError(f"{cls!r} is not a Connector")
        if not NAME.fullmatch(cls.name or ""):
            raise PluginError(f"{cls.__qualname__} needs a name, got {cls.name!r}")
        if cls.name in self._connectors:
            raise PluginError(f"two plugins register a connector named {cls.name!r}")
        fields = [f.name for f in getattr(cls, "fields", ())]
        if len(set(fields)) != len(fields) or not all(NAME.fullmatch(n) for n in fields):
            raise PluginError(f"{cls.__qualname__}.fields need distinct names like "
                              f"'server_url', got {fields!r}")
        self._connectors[cls.name] = cls
        return cls

    def names(self, kind: str) -> list[str]:
        """The registered provider names of one kind, sorted."""
        return sorted(self._providers[kind])

    def get(self, kind: str, name: str) -> type[Provider] | None:
        return self._providers[kind].get(name)

    def owner(self, kind: str, name: str) -> str | None:
        """The plugin that registered a provider."""
        return self._owner.get((kind, name))

    def connector_names(self) -> list[str]:
        return sorted(self._connectors)

    def connector(self, name: str) -> type[Connector] | None:
        return self._connectors.get(name)


JobRun = Callable[[PluginHost], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Job:
    """A periodic job: ``run(host)`` every ``every_seconds``, once per period across all
    processes (Celery beat, or the embedded worker's scheduler). ``name`` is unique; the
    host prefixes nothing, so choose one that names your plugin (``"local_feeds"``)."""

    name: str
    every_seconds: float
    run: JobRun
    plugin: str = ""


class JobRegistry(_Owned):
    """Periodic jobs plugins ask for in ``consultbook_register_jobs``."""

    def __init__(self) -> None:
        super().__init__()
        self._jobs: dict[str, Job] = {}

    def add(self, name: str, every_seconds: float, run: JobRun) -> Job:
        """Run ``run(host)`` every ``every_seconds`` (at least 1). ``run`` returns a small
        summary (logged; ``None`` is fine); an exception is logged and the job runs again
        at its next period."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise PluginError(f"{self._who()} registered a job named {name!r}; use lower "
                              "case letters, digits, _ and -")
        if name in self._jobs:
            raise PluginError(f"two plugins register a job named {name!r}: "
                              f"{self._jobs[name].plugin} and {self.current_plugin}")
        if (isinstance(every_seconds, bool) or not isinstance(every_seconds, int | float)
                or not 1 <= every_seconds <= 7 * 86400):
            raise PluginError(f"job {name!r} of {self._who()} needs every_seconds between "
                              f"1 and a week, got {every_seconds!r}")
        if not callable(run):
            raise PluginError(f"job {name!r} of {self._who()} needs a callable run")
        job = Job(name, float(every_seconds), run, self.current_plugin)
        self._jobs[name] = job
        return job

    def __iter__(self) -> Iterator[Job]:
        return iter(sorted(self._jobs.values(), key=lambda j: j.name))

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, name: str) -> Job | None:
        return self._jobs.get(name)


@dataclass(frozen=True)
class Route:
    """A Falcon resource a plugin serves. ``factory(host)`` makes it once per app."""

    path: str
    factory: Callable[[RouteHost], object]
    auth: str
    plugin: str = ""


class RouteRegistry(_Owned):
    """HTTP routes plugins serve, added in ``consultbook_register_routes``.

    ``auth`` says who may call:

    * ``"admin"`` -- the embedded admin (App Bridge session token); the path must start
      with ``/admin/api/``; the resource gets the shop as ``req.context.shop``.
    * ``"proxy"`` -- the storefront through Shopify's App Proxy (signed query); the path
      must start with ``/proxy/``; ``req.context.shop`` likewise.
    * ``"none"`` -- anyone (a provider's push notifications): the plugin verifies the
      request itself (a channel token, Graph's ``clientState``). The path must start with
      ``/hooks/<plugin>/`` where ``<plugin>`` is the registering plugin's name, so
      unauthenticated plugin routes are easy to see and never shadow the engine's.

    Paths use Falcon's syntax (``/admin/api/calendar/busy/{item_id}``); a path the engine
    or another plugin serves already fails loading."""

    def __init__(self) -> None:
        super().__init__()
        self._routes: dict[str, Route] = {}

    def add(self, path: str, factory: Callable[[RouteHost], object],
            auth: str = "admin") -> Route:
        if auth not in AUTH_SCHEMES:
            raise PluginError(f"route {path!r} of {self._who()}: auth must be one of "
                              f"{', '.join(AUTH_SCHEMES)}, got {auth!r}")
        if not isinstance(path, str) or not _PATH.fullmatch(path) or _RESERVED.match(path):
            raise PluginError(f"route {path!r} of {self._who()} is not a path a plugin may "
                              "serve")
        prefix = {"admin": "/admin/api/", "proxy": "/proxy/",
                  "none": f"/hooks/{self.current_plugin}/"}[auth]
        if not path.startswith(prefix) or path == prefix.rstrip("/"):
            raise PluginError(f"route {path!r} of {self._who()} with auth={auth!r} must "
                              f"start with {prefix}")
        if path in self._routes:
            raise PluginError(f"two plugins register the route {path!r}: "
                              f"{self._routes[path].plugin} and {self.current_plugin}")
        if not callable(factory):
            raise PluginError(f"route {path!r} of {self._who()} needs a callable factory")
        route = Route(path, factory, auth, self.current_plugin)
        self._routes[path] = route
        return route

    def __iter__(self) -> Iterator[Route]:
        return iter(sorted(self._routes.values(), key=lambda r: r.path))

    def __len__(self) -> int:
        return len(self._routes)


@dataclass(frozen=True)
class SecretColumn:
    """An encrypted column of a plugin's table: ``aad(row)`` is the purpose string the
    value was encrypted with (the row has the table's columns as attributes)."""

    table: Table
    column: str
    aad: Callable[[Any], str]
    plugin: str = ""


class SecretRegistry(_Owned):
    """Encrypted columns of plugins' own tables, added in ``consultbook_register_secrets``,
    so that ``consultbook keys rotate`` re-encrypts them (safely while the app runs: each
    cell by compare-and-set) beside the engine's own."""

    def __init__(self) -> None:
        super().__init__()
        self._columns: list[SecretColumn] = []

    def add_column(self, table: Table, column: str, aad: Callable[[Any], str]) -> None:
        """``table`` is a SQLAlchemy ``Table`` (``Model.__table__``) with a one-column
        primary key; ``column`` holds tokens made by ``secrets.encrypt(..., aad=aad(row))``
        or ``NULL``."""
        if not isinstance(table, Table) or column not in table.c:
            raise PluginError(f"{self._who()} declared a secret column {column!r} its table "
                              "does not have")
        if len(table.primary_key.columns) != 1:
            raise PluginError(f"{self._who()}: {table.name} needs a one-column primary key "
                              "for its secrets to be rotated")
        if not callable(aad):
            raise PluginError(f"{self._who()}: aad of {table.name}.{column} must be callable")
        self._columns.append(SecretColumn(table, column, aad, self.current_plugin))

    def __iter__(self) -> Iterator[SecretColumn]:
        return iter(self._columns)
