"""Retries with capped, jittered exponential backoff that honour ``Retry-After``.

Providers wrap each remote call in :func:`retrying`. The policy comes from the
configuration (``CONSULTBOOK_PROVIDER_*``), so tests run the same code with
millisecond backoffs. A caller that must be done by a time (the holder of a free/busy
lease: engine.services.freebusy) runs the provider inside :func:`deadline`, and no retry
is started that its policy's timeout could carry past it -- whichever provider it is.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

from engine.providers.errors import ProviderUnavailable

T = TypeVar("T")


class Retry(Exception):
    """Raised inside a retried operation to ask for another attempt."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry one provider call.

    ``attempts`` counts every try (1 = no retry). The n-th wait is a random duration in
    ``[0, min(cap, base * 2**n)]`` ("full jitter"), unless the provider said
    ``Retry-After``: then exactly that, provided it is at most ``max_retry_after``
    (a longer one ends the call at once with :class:`ProviderUnavailable` carrying the
    hint, for the worker to reschedule instead of holding a thread).
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 60.0
    timeout: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return max(0.0, retry_after)
        return random.uniform(0, min(self.cap, self.base * (2 ** attempt)))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


#: The time (``time.monotonic()``) by which the provider calls of this context must be
#: done, if any (:func:`deadline`).
_DEADLINE: ContextVar[float | None] = ContextVar("consultbook_retry_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within the block, :func:`retrying` starts no retry that could end later than
    ``seconds`` from now: one whose wait plus the policy's timeout (the longest an
    attempt takes) does not fit. The first attempt is always made. Nested deadlines
    keep the earlier one."""
    at = time.monotonic() + max(0.0, seconds)
    outer = _DEADLINE.get()
    token = _DEADLINE.set(at if outer is None else min(outer, at))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def retrying(policy: RetryPolicy, provider: str, operation: Callable[[], T]) -> T:
    """Run ``operation``, retrying while it raises :class:`Retry`.

    When the attempts run out, a ``Retry-After`` exceeds the policy's limit, or the next
    attempt would not be over by the :func:`deadline` of the context, raises
    :class:`ProviderUnavailable` with the last reason. Any other exception propagates.
    """
    last: Retry | None = None
    until = _DEADLINE.get()
    for attempt in range(max(1, policy.attempts)):
        try:
            return operation()
        except Retry as exc:
            last = exc
            if exc.retry_after is not None and exc.retry_after > policy.max_retry_after:
                break
            if attempt + 1 < policy.attempts:
                wait = policy.delay(attempt, exc.retry_after)
                if until is not None and time.monotonic() + wait + policy.timeout > until:
                    break  # the caller's time would be over before the retry is
                policy.sleep(wait)
    assert last is not None
    raise ProviderUnavailable(f"{provider} is unavailable: {last.reason}", provider=provider,
                              retry_after=last.retry_after)
