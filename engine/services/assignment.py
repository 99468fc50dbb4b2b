"""Who takes a start when the customer asked for ``expert: "any"``.

The contract's order (Capacity):

* ``least_booked`` (the default): fewest pending or confirmed bookings of the service
  made in the last 30 days, divided by the expert's ``weight``; ties go to the expert
  booked least recently (never booked first), then to the smaller id.
* ``priority``: the highest ``priority`` first; ties as ``least_booked``.

:func:`ranked` is a pure function of the candidates and their booking figures;
:func:`booking_stats` reads those figures for all candidates in one grouped query. A
booking's "made" instant is its claim's ``created_at`` (when its hold was taken: the
customer's act of booking starts there, and the column never moves afterwards).

The order only decides whom to *try* first: the hold then tries each candidate in turn
and the database decides whether that expert can take the start (overlap, seats,
limits). Two concurrent requests may rank alike and race for the same expert; the loser
moves on to the next, so fairness is exact for bookings made one after another and
approximate under a burst, while capacity is exact always.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.store.models import CONFIRMED, PENDING, Claim

LEAST_BOOKED = "least_booked"
PRIORITY = "priority"
ASSIGNMENTS = (LEAST_BOOKED, PRIORITY)
WINDOW = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An expert who could take the start: the facts the order needs."""

    id: str
    priority: int = 50
    weight: int = 1


@dataclass(frozen=True, slots=True)
class BookingStats:
    """An expert's bookings of the service made in the window, and the newest one."""

    count: int = 0
    last_booked: datetime | None = None


NEVER = BookingStats()


def _least_booked_key(c: Candidate, stats: BookingStats) -> tuple[Fraction, int, float, str]:
    # The load is exact (a fraction, not a float): 2/6 and 1/3 tie as they must.
    load = Fraction(stats.count, max(1, c.weight))
    # Never booked sorts before any instant; then the least recent first.
    never, when = (0, 0.0) if stats.last_booked is None else (1, stats.last_booked.timestamp())
    return (load, never, when, c.id)


def ranked(assignment: str, candidates: Iterable[Candidate],
           stats: Mapping[str, BookingStats]) -> list[Candidate]:
    """The candidates in the order they are tried (see the module docstring). An unknown
    ``assignment`` counts as ``least_booked``, the default."""
    def key(c: Candidate) -> tuple[int, tuple[Fraction, int, float, str]]:
        first = -c.priority if assignment == PRIORITY else 0
        return (first, _least_booked_key(c, stats.get(c.id, NEVER)))

    return sorted(candidates, key=key)


def booking_stats(session: Session, service_id: str, expert_ids: Sequence[str],
                  now: datetime) -> dict[str, BookingStats]:
    """For each expert, the pending or confirmed bookings of the service made since
    ``now`` - 30 days, and when the newest was made: one query for all of them."""
    if not expert_ids:
        return {}
    rows = session.execute(
        select(Claim.expert_id, func.count(), func.max(Claim.created_at))
        .where(Claim.service_id == service_id, Claim.expert_id.in_(list(expert_ids)),
               Claim.status.in_((PENDING, CONFIRMED)), Claim.created_at > now - WINDOW)
        .group_by(Claim.expert_id))
    return {expert_id: BookingStats(int(count), last) for expert_id, count, last in rows}
