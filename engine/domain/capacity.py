"""Capacity arithmetic, pure: which session a start belongs to, and which limit periods.

A *session* is one expert's meeting of one service at one start: every claim of it
shares its key, and the database counts their seats (engine.services.capacity). A limit
counts sessions per period of the expert's own calendar: the local day, the ISO week
(Monday first; the week of 2027-01-01 is 2026-W53) and the calendar month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

PERIODS = ("day", "week", "month")


def session_key(expert_id: str, service_id: str, start: datetime) -> str:
    return f"{expert_id}|{service_id}|{int(start.timestamp())}"


@dataclass(frozen=True, slots=True)
class Periods:
    """The periods an instant falls in, in one zone: ``2026-12-01``, ``2026-W49``,
    ``2026-12``."""

    day: str
    week: str
    month: str

    def counter_keys(self) -> tuple[str, str, str]:
        """The ``capacity_counters.period`` values, in the order counters are taken."""
        return (f"D{self.day}", f"W{self.week}", f"M{self.month}")

    def of(self, period: str) -> str:
        return {"day": self.day, "week": self.week, "month": self.month}[period]


def periods_of(start: datetime, tz: ZoneInfo) -> Periods:
    local = start.astimezone(tz)
    year, week, _ = local.isocalendar()
    return Periods(local.strftime("%Y-%m-%d"), f"{year:04d}-W{week:02d}",
                   local.strftime("%Y-%m"))


def periods_at(instant: int, tz: ZoneInfo) -> Periods:
    """:func:`periods_of` for POSIX seconds (the slot engine's instants)."""
    return periods_of(datetime.fromtimestamp(instant, tz), tz)
