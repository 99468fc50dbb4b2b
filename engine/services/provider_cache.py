"""Built provider instances, reused per process so a request does not decrypt credentials.

Building a shop's provider (:meth:`engine.plugins.Plugins.instantiate`) reads its
connection row and decrypts the credentials (AES-GCM, plus JSON); the storefront's
availability path did it on every request. :class:`ProviderInstances` keeps the built
instance per **(shop and its provider choice, provider class, connection version)** for
``ttl`` seconds (default 30):

* the *connection version* is the connection row's ``(id, status, connected_at,
  account)`` -- the grant, not its tokens: a provider saving a refreshed access token
  (``ConnectionHandle.save``) keeps its instance, which already holds the new token,
  while reconnecting, a grant marked broken or disconnecting changes it. Read
  through the process read cache (:class:`engine.store.db.ReadCache`: void after any
  write of this process, at most a second old otherwise). Reconnecting, a grant marked
  broken, disconnecting, or a credentials save (a refreshed token) all change it, in any
  process, so the next request builds afresh; the old instance is never used again;
* a connection that is not ``connected`` drops the shop's instances of that provider;
* a changed provider choice (settings) is a different key; a settings write of this
  process also clears the read cache the shop's choice comes from;
* :meth:`ProviderInstances.invalidate` drops a shop's instances at once (the host calls
  it from its connection-changed path), and the TTL bounds everything else (per-shop
  provider settings another process changed).

A failure to build (no connection, broken grant, missing configuration) is never
cached: it raises every time, as before. Instances are shared by the threads of a
process; the built-in providers open their HTTP session per call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select

from engine.providers.base import Provider
from engine.store.providers_models import ProviderConnection

if TYPE_CHECKING:
    from engine.services.providers import Plugins, ShopProviders

P = TypeVar("P", bound=Provider)

DEFAULT_TTL = 30.0


@dataclass
class _Entry:
    at: float
    instance: Any


class ProviderInstances:
    """A process-local cache of built provider instances (see the module docstring)."""

    def __init__(self, plugins: Plugins, *, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 512) -> None:
        self.plugins = plugins
        self.ttl = ttl
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self._lock = threading.Lock()
        #: How many instances were built (tests and benchmarks read it).
        self.builds = 0

    def connection_version(self, shop_id: str, connector: str) -> Hashable:
        """``(id, status, connected_at, account)`` of the shop's connection row, or
        ``("none",)``."""
        db = self.plugins.db
        key = ("connection_version", shop_id, connector)
        cached: Hashable = db.cache.get(key)
        if cached is not None:
            return cached
        with db.lookup() as session:
            row = session.execute(
                select(ProviderConnection.id, ProviderConnection.status,
                       ProviderConnection.connected_at, ProviderConnection.account)
                .where(ProviderConnection.shop_id == shop_id,
                       ProviderConnection.provider == connector)).one_or_none()
        version: Hashable = ("none",) if row is None else (
            row.id, row.status, row.connected_at.isoformat(), row.account)
        db.cache.put(key, version)
        return version

    def get(self, cls: type[P], sp: ShopProviders) -> P:
        """The instance of ``cls`` for the shop: the cached one while its key holds and it
        is younger than ``ttl``, else a new one (``plugins.instantiate``; its errors
        propagate and nothing is cached)."""
        version = self.connection_version(sp.shop.id, cls.connection) if cls.connection \
            else None
        if version is not None and version[1:2] != ("connected",):  # type: ignore[index]
            # Broken or gone: no instance of the old grant survives (whatever a later
            # reconnect's row looks like), and building raises the reason as before.
            self._drop(sp, cls)
            return self.plugins.instantiate(cls, sp)
        key: tuple[Any, ...] = (sp, cls, version)
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry.at < self.ttl:
            instance: P = entry.instance
            return instance
        built = self.plugins.instantiate(cls, sp)
        with self._lock:
            self.builds += 1
            if len(self._entries) >= self.max_entries:
                self._prune(now)
            # An older version of this shop's provider is dead: drop it now.
            self._drop(sp, cls, locked=True)
            self._entries[key] = _Entry(now, built)
        return built

    def _drop(self, sp: Any, cls: type[Provider], *, locked: bool = False) -> None:
        if not locked:
            with self._lock:
                self._drop(sp, cls, locked=True)
            return
        for old in [k for k in self._entries if k[0] == sp and k[1] is cls]:
            del self._entries[old]

    def invalidate(self, shop_id: str | None = None) -> None:
        """Forget the instances of one shop (by id), or of every shop."""
        with self._lock:
            if shop_id is None:
                self._entries.clear()
                return
            for key in [k for k in self._entries if _shop_id(k[0]) == shop_id]:
                del self._entries[key]

    def _prune(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if now - e.at >= self.ttl]:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:
            self._entries.clear()


def _shop_id(sp: Any) -> str | None:
    shop = getattr(sp, "shop", None)
    return getattr(shop, "id", None)


__all__ = ["DEFAULT_TTL", "ProviderInstances"]
