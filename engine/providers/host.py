"""What a plugin's periodic jobs and routes receive from the host (:class:`PluginHost`).

The host (``engine.services.providers``) builds it; a plugin only uses what this
protocol names: the clock, storage and secrets (:mod:`engine.providers.storage`), the
shops and their provider contexts, experts, and busy-time invalidation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from engine.clock import Clock
from engine.config import Config
from engine.providers.base import ProviderContext
from engine.providers.storage import ExpertInfo, Secrets, ShopInfo, Storage

__all__ = ["JobHost", "PluginHost", "RouteHost"]


class PluginHost(Protocol):
    """What a plugin's periodic job and route factory receive from the host."""

    @property
    def clock(self) -> Clock: ...

    @property
    def config(self) -> Config:
        """Deployment settings (read-only). Prefer :meth:`option`."""
        ...

    @property
    def db(self) -> Storage: ...

    @property
    def secrets(self) -> Secrets: ...

    def option(self, name: str, default: Any = None) -> Any:
        """A deployment setting by name (``provider_timeout_seconds``...), else ``default``."""
        ...

    def shops(self) -> Iterable[ShopInfo]:
        """Every installed (not uninstalled) shop."""
        ...

    def contexts(self, *, kind: str, name: str) -> Iterable[ProviderContext]:
        """A provider context for each installed shop whose settings choose provider
        ``name`` of ``kind`` (``"calendar"``, ``"video"``, ``"mail"``); a shop whose
        connection is missing or broken is skipped (and logged)."""
        ...

    def context_for(self, shop_id: str, kind: str, name: str) -> ProviderContext:
        """The provider context of provider ``name`` for one shop, whether or not the
        shop chose it. Raises ``LookupError`` for an unknown shop, and the provider
        errors (:class:`~engine.providers.errors.ProviderNotConfigured`,
        :class:`~engine.providers.errors.ConnectionBroken`) like the engine's own calls."""
        ...

    def expert(self, shop_id: str, expert_id: str) -> ExpertInfo | None:
        """The shop's expert (not deleted), or ``None``."""
        ...

    def experts(self, shop_id: str) -> Iterable[ExpertInfo]:
        """Every expert of the shop (not deleted), ordered by id; empty for an unknown
        shop. One read, however many experts there are."""
        ...

    def invalidate_busy(self, shop_id: str, expert_id: str | None = None) -> None:
        """The cached busy time of that expert (or of all the shop's experts) is stale:
        the next availability request reads the provider again."""
        ...


#: What ``consultbook_register_jobs`` jobs get when they run.
JobHost = PluginHost


class RouteHost(PluginHost, Protocol):
    """What ``consultbook_register_routes`` factories get: a :class:`PluginHost` and the
    web layer's request readers, so a plugin's resources parse input exactly as the
    engine's do (the same limits, the same 4xx JSON errors)."""

    def read_json(self, req: Any) -> Any:
        """The request body as strict JSON: at most 1 MiB (413 beyond), UTF-8, finite
        numbers, bounded nesting (400 naming what is wrong)."""
        ...

    def query_params(self, req: Any) -> dict[str, str]:
        """The query string as a flat dict (the last value of a repeated key wins)."""
        ...
