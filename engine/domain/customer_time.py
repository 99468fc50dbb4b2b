# ruff: noqa: RUF002 -- the docstrings show the en and em dashes the text really has.
"""An appointment's time in words, for the customer: their zone first, the shop's beside it.

Pure functions over aware instants and IANA zone names. Nothing here reads the host's
local time or its locale: every instant is converted with :class:`zoneinfo.ZoneInfo`,
and day and month names come from the tables below, not from ``strftime`` (whose
``%A``/``%B`` follow the C library's ``LC_TIME``).

    >>> from datetime import UTC, datetime
    >>> start = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    >>> end = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    >>> text = customer_and_shop_time(start, end, "America/Los_Angeles", "Europe/Berlin")
    >>> mine, shop = text.split(" — ")
    >>> mine
    'Tuesday 1 December 2026, 09:00–10:00 (America/Los_Angeles)'
    >>> shop
    "18:00–19:00 in Berlin (Europe/Berlin), the shop's time"

When the customer's zone is unknown, invalid or the shop's own, only the shop's time is
given: ``Tuesday 1 December 2026, 18:00–19:00 (Europe/Berlin)``.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["customer_and_shop_time", "local_time", "valid_zone", "zone_place"]

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
EN_DASH = "\u2013"
EM_DASH = "\u2014"


def valid_zone(name: object) -> str | None:
    """``name`` if it is an IANA zone this host's tz database knows, else ``None``."""
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def zone_place(tz: str) -> str | None:
    """The place a zone is named after (``America/Los_Angeles`` -> ``Los Angeles``), or
    ``None`` for zones that name no place (``UTC``, ``Etc/GMT+5``)."""
    if "/" not in tz or tz.startswith("Etc/"):
        return None
    return tz.rsplit("/", 1)[-1].replace("_", " ") or None


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive value would be read as host local time by astimezone(): refuse it.
        raise ValueError("appointment times must be timezone-aware")
    return value


def _day(value: datetime) -> str:
    return f"{DAYS[value.weekday()]} {value.day} {MONTHS[value.month - 1]} {value.year}"


def _span(start: datetime, end: datetime, *, with_day: bool) -> str:
    """``Tuesday 1 December 2026, 09:00–10:00`` (local values); the end's day is named too
    when the appointment crosses midnight."""
    head = f"{_day(start)}, " if with_day else ""
    if end.date() == start.date():
        return f"{head}{start:%H:%M}{EN_DASH}{end:%H:%M}"
    return f"{head}{start:%H:%M}{EN_DASH}{_day(end)}, {end:%H:%M}"


def local_time(start: datetime, end: datetime, tz: str) -> str:
    """``Tuesday 1 December 2026, 18:00–19:00 (Europe/Berlin)``."""
    zone = ZoneInfo(tz)
    a, b = _aware(start).astimezone(zone), _aware(end).astimezone(zone)
    return f"{_span(a, b, with_day=True)} ({tz})"


def customer_and_shop_time(start: datetime, end: datetime, customer_tz: str | None,
                           shop_tz: str) -> str:
    """The customer's time, then the shop's (see the module docstring).

    The shop's part repeats the day only when it differs from the customer's (a
    Los Angeles evening is the next morning in Berlin). ``shop_tz`` must be valid;
    ``customer_tz`` may be anything (what is not a known zone counts as unknown).
    """
    customer = valid_zone(customer_tz)
    if customer is None or customer == shop_tz:
        return local_time(start, end, shop_tz)
    mine = local_time(start, end, customer)
    shop = ZoneInfo(shop_tz)
    a, b = _aware(start).astimezone(shop), _aware(end).astimezone(shop)
    same_day = a.date() == _aware(start).astimezone(ZoneInfo(customer)).date()
    place = zone_place(shop_tz)
    where = f"in {place} ({shop_tz})" if place else f"({shop_tz})"
    return f"{mine} {EM_DASH} {_span(a, b, with_day=not same_day)} {where}, the shop's time"
