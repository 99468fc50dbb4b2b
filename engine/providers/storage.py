"""The shapes of what the host lends a plugin: shops, storage, secrets, experts.

A plugin never imports the engine's store, services or wiring; it receives objects that
satisfy these protocols (the host's real objects have more, which a plugin must not use).

* :class:`ShopInfo` -- the shop a call is for (``id``, ``domain``, ``timezone``).
* :class:`Storage` -- the host's database: SQLAlchemy sessions for the plugin's *own*
  tables (see ``consultbook_migration_locations``), and a process-local read cache.
* :class:`Secrets` -- AES-256-GCM encryption under the deployment's keyring, bound to
  an ``aad`` (a purpose string naming the row and column, e.g. ``"ics_feed:<id>:url"``).
  Columns a plugin encrypts this way are declared with ``secrets.add_column`` in
  ``consultbook_register_secrets`` so that ``consultbook keys rotate`` re-encrypts them.
* :class:`ExpertInfo` -- an expert of a shop as a plugin may see it.
"""

from __future__ import annotations

from collections.abc import Hashable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

__all__ = ["ExpertInfo", "ReadCache", "Secrets", "ShopInfo", "Storage"]


class ShopInfo(Protocol):
    """A shop as a plugin sees it (the engine's ``ShopRef`` satisfies it)."""

    @property
    def id(self) -> str: ...

    @property
    def domain(self) -> str:
        """``<name>.myshopify.com``."""
        ...

    @property
    def timezone(self) -> str:
        """The shop's IANA zone."""
        ...


class ReadCache(Protocol):
    """A process-local cache of read-mostly answers: void after any local write through
    :meth:`Storage.write`, and at most about a second old otherwise."""

    def get(self, key: Hashable) -> Any: ...

    def put(self, key: Hashable, value: Any) -> None: ...


class Storage(Protocol):
    """The host's database as a plugin uses it: sessions for the plugin's own tables.

    ``write()`` commits when the block ends without an exception and rolls back
    otherwise; ``read()`` is a read-only transaction; ``lookup()`` is a short read that
    may be served by a replica-safe path. A plugin never touches the engine's tables."""

    @property
    def cache(self) -> ReadCache: ...

    def read(self) -> AbstractContextManager[Session]: ...

    def write(self) -> AbstractContextManager[Session]: ...

    def lookup(self) -> AbstractContextManager[Session]: ...


class Secrets(Protocol):
    """Encryption at rest under the deployment's keys (rotated by ``consultbook keys
    rotate``). ``aad`` binds a token to its row and purpose: a token copied to another
    row or column does not decrypt."""

    def encrypt(self, plaintext: str, *, aad: str) -> str: ...

    def decrypt(self, token: str, *, aad: str) -> str:
        """The plaintext. When no configured key decrypts ``token`` with this ``aad`` (a
        dropped key, a token of another row) it raises the host's crypto error, which the
        host answers as ``409 reconnect_required``; a job may catch ``Exception``."""
        ...


@dataclass(frozen=True)
class ExpertInfo:
    """An expert of a shop: ``timezone`` is the expert's own zone or, when unset, the
    shop's (always a valid IANA name)."""

    id: str
    shop_id: str
    name: str
    email: str | None
    timezone: str
