"""Plumbing that account-backed calendar providers share: the per-shop session base, a
``requests`` session that ignores the machine's proxy/CA variables, and the loops that
split a free/busy question into the calls a service's limits allow.

Google (``freebusy.query``: 50 calendars, 60 days) and Outlook (``getSchedule``: 20
schedules, under 62 days) both use these, so the limits are the only thing that differs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

import requests

from engine.providers.base import ProviderContext
from engine.providers.errors import ConnectionBroken, ProviderNotConfigured
from engine.providers.intervals import merge_clip
from engine.providers.types import CalendarBusy

Interval = tuple[datetime, datetime]


def http_session(verify: str | bool) -> requests.Session:
    """A ``requests.Session`` that verifies TLS with ``verify`` (our CA setting) and
    ignores ``HTTPS_PROXY``/``REQUESTS_CA_BUNDLE`` and the like (``trust_env = False``):
    what the configuration says is what is used."""
    session = requests.Session()
    session.trust_env = False
    session.verify = verify
    return session


class AccountSession:
    """Calls for one shop's connected account; subclasses name the service.

    Opening one without a connection raises :class:`ProviderNotConfigured`; use it as a
    context manager so pooled sockets are closed (:meth:`close`)."""

    #: The provider name errors carry (``"google"``).
    provider: ClassVar[str] = ""
    #: Who the account belongs to, for messages ("Google", "Microsoft").
    account_label: ClassVar[str] = ""
    #: The service, for messages ("Google", "Outlook").
    service_label: ClassVar[str] = ""

    def __init__(self, ctx: ProviderContext) -> None:
        if ctx.connection is None:
            raise ProviderNotConfigured(
                f"the shop has not connected its {self.account_label} account")
        self.ctx = ctx

    def __enter__(self) -> AccountSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections (override: the base holds none)."""

    def _broken(self, reason: str) -> ConnectionBroken:
        """Mark the shop's connection broken (the merchant sees ``reason``) and return
        the error to raise."""
        if self.ctx.connection is not None:
            self.ctx.connection.mark_broken(reason)
        return ConnectionBroken(f"the {self.service_label} connection is broken: {reason}",
                                provider=self.provider)


def busy_calls(calendars: Iterable[str], start: datetime, end: datetime, *,
               max_calendars: int, max_range: timedelta
               ) -> Iterator[tuple[list[str], datetime, datetime]]:
    """The free/busy calls to make: ``(batch of calendars, piece start, piece end)`` for
    every range piece of at most ``max_range`` and every batch of at most
    ``max_calendars`` distinct calendars (sorted, so calls are reproducible)."""
    unique = sorted(set(calendars))
    piece = start
    while piece < end:
        piece_end = min(end, piece + max_range)
        for i in range(0, len(unique), max_calendars):
            yield unique[i:i + max_calendars], piece, piece_end
        piece = piece_end


class BusyAnswers:
    """What the calls of :func:`busy_calls` found, per calendar, assembled into the
    provider contract's answer: every asked calendar answered, an error for any
    calendar one piece could not read (never a partial, free-looking answer)."""

    def __init__(self, calendars: Sequence[str]) -> None:
        self.calendars = list(calendars)
        self.found: dict[str, list[Interval]] = {c: [] for c in calendars}
        self.errors: dict[str, str] = {}

    def add(self, calendar: str, intervals: Iterable[Interval]) -> None:
        self.found.setdefault(calendar, []).extend(intervals)

    def fail(self, calendar: str, reason: str) -> None:
        self.errors[calendar] = reason

    def result(self, start: datetime, end: datetime,
               extra: dict[str, list[Interval]] | None = None) -> dict[str, CalendarBusy]:
        """The answer for ``[start, end)``; ``extra`` adds busy time per calendar (e.g.
        the time outside working hours)."""
        out: dict[str, CalendarBusy] = {}
        for cal in self.calendars:
            if cal in self.errors:
                out[cal] = CalendarBusy(error=self.errors[cal])
                continue
            busy = self.found.get(cal, []) + (extra or {}).get(cal, [])
            out[cal] = CalendarBusy(tuple(merge_clip(busy, start, end)))
        return out


__all__ = ["AccountSession", "BusyAnswers", "busy_calls", "http_session"]
