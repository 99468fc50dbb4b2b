"""What providers raise. The worker retries :class:`ProviderUnavailable`, asks the
merchant to reconnect on :class:`ConnectionBroken`, and gives up on the rest.

A plugin's own routes raise :class:`ValidationError` (bad input: 400 with the JSON
error body, ``field`` naming the field) and :class:`NotFound` (404) -- the engine's own
classes, re-exported here so plugins need not import ``engine.errors``.
"""

from __future__ import annotations

from engine.errors import ConsultbookError, NotFound, Unprocessable, ValidationError

__all__ = [
    "ConnectionBroken",
    "NotFound",
    "ProviderError",
    "ProviderNotConfigured",
    "ProviderRejected",
    "ProviderUnavailable",
    "ValidationError",
]


class ProviderError(ConsultbookError):
    """A provider call failed. ``provider`` names the provider (``"google"``...)."""

    code = "provider_error"

    def __init__(self, message: str, *, provider: str = "", code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.provider = provider


class ProviderUnavailable(ProviderError):
    """Transient: timeouts, 5xx, rate limits that outlasted our retries. Try again later.

    ``retry_after`` is the provider's own hint in seconds, when it gave one.
    """

    code = "provider_unavailable"

    def __init__(self, message: str, *, provider: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(message, provider=provider)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """Permanent: the provider refused the request as such (400, 403 forbidden, 404...)."""

    code = "provider_rejected"


class ConnectionBroken(ProviderError):
    """The shop's account connection no longer works (revoked or expired grant); the
    connection is marked broken and the merchant must reconnect."""

    code = "connection_broken"


class ProviderNotConfigured(Unprocessable):
    """The shop's settings name a provider that is not installed, not connected, or
    lacks its app credentials. A clear message, never a crash."""

    code = "provider_not_configured"
