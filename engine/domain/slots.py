"""The slot engine: which start instants an expert can be booked at (pure).

Everything here is a function of its arguments: no I/O, no clock reads (``now`` is an
argument), no database, and no dependence on the host's ``TZ``. Time is integer POSIX
seconds (:data:`Instant`); wall-clock time exists only as *(local date, minute of the
day)* in an expert's IANA zone and is turned into instants with :mod:`zoneinfo`.

Semantics (the product):

* For every local date ``D`` the working windows are ``overrides[D]`` if ``D`` is in the
  overrides (``[]`` closes the day), else ``weekly[D.weekday()]`` (0 = Monday). A window
  is ``(start_minute, end_minute)`` with ``0 <= start < end <= 1440``; ``1440`` ("24:00")
  is local midnight of the next day. Its edges become instants with
  :func:`wall_to_instant`; a window whose instants come out empty yields nothing.
* The grid is wall-clock, anchored at the window's start: wall minutes
  ``start + k * interval < end``. A wall time that does not exist (spring-forward gap) is
  skipped; an ambiguous one (fall back) yields both real instants, each once.
* A candidate instant ``s`` is a slot iff ``[s, s + duration)`` lies inside the window's
  instants ``[ws, we)``, ``now + min_notice <= s < now + max_days_ahead * 86400``,
  ``range_start <= s < range_end``, and the claimed range
  ``[s - buffer_before, s + duration + buffer_after)`` overlaps no busy interval.
* Seats and limits (both optional inputs of :class:`ExpertCalendar`). ``sessions`` are
  the expert's live sessions of *this* service, ``start -> seats_left``; each occupies
  its claimed range (by the service's current rules) like a busy interval. ``closed``
  names the limit periods that are full for the expert (local day ``2026-12-01``, ISO
  week ``2026-W49``, month ``2026-12``, in ``cal.tz``: engine.domain.capacity's
  ``Periods``). A grid start is offered either as a *new session* -- free of busy time
  and of every session, and not in a closed period -- with ``seats_left =
  rules.seats``; or as a *join* of the session at that start when it has seats left
  and its claimed range overlaps no busy interval and no *other* session: a join opens
  no new session, so no limit closes it. A full session is busy like any claim.

Assumptions: no single working window contains two UTC-offset transitions that cancel
each other out (true of every zone in the tz database); and local dates never go
backwards (no clock is set back across midnight from after it), so a local date, week
or month is one half-open run of instants from its first local midnight (true of every
zone since 2011; before, Atlantic Canada set clocks back at 00:01, and a limit period
there may differ from ``periods_of`` in the repeated hour after that midnight). A window
whose UTC offset is the same at both edges is computed arithmetically; every other
window resolves each grid wall time through :mod:`zoneinfo` individually.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from operator import attrgetter, itemgetter
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

__all__ = [
    "ExpertCalendar",
    "Instant",
    "Overrides",
    "SeatedSlot",
    "ServiceRules",
    "Slot",
    "Weekly",
    "claimed_range",
    "expert_slots",
    "is_offered",
    "local_windows",
    "merged_slots",
    "period_range",
    "wall_to_instant",
]

Instant = int
"""POSIX seconds, UTC."""

Weekly = Mapping[int, Sequence[tuple[int, int]]]
"""Weekday (0 = Monday .. 6 = Sunday) -> wall-clock windows ``(start_minute, end_minute)``."""

Overrides = Mapping[date, Sequence[tuple[int, int]]]
"""Local date -> its windows, replacing that weekday's windows; ``[]`` = closed."""

_DAY = 86_400
_MINUTES_PER_DAY = 1440
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)
# Local dates the engine evaluates are clamped here so that date arithmetic (+/- one day,
# "24:00" = next midnight) and zoneinfo conversions never leave datetime's range.
_FIRST_DATE = date(2, 1, 1)
_LAST_DATE = date(9998, 12, 31)
_MIN_INSTANT = (_FIRST_DATE.toordinal() - _EPOCH_ORDINAL) * _DAY
_MAX_INSTANT = (_LAST_DATE.toordinal() - _EPOCH_ORDINAL) * _DAY
_FIRST = itemgetter(0)
_BY_START = attrgetter("start")
_BY_EXPERT = attrgetter("expert_id")
_FOURTH = itemgetter(3)


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """How a service is sold. All quantities are minutes except ``max_days_ahead``.

    ``duration`` > 0 is the meeting length; ``interval`` > 0 the step of the wall-clock
    grid (callers pass ``duration`` when the service sets none); the buffers (>= 0) are
    claimed around the meeting and may fall outside working hours; a slot must start at
    least ``min_notice`` minutes after ``now`` and strictly less than ``max_days_ahead``
    24-hour days after ``now``. Invalid values raise :class:`ValueError`.
    """

    duration: int
    interval: int
    buffer_before: int = 0
    buffer_after: int = 0
    min_notice: int = 0
    max_days_ahead: int = 60
    #: Customers per session (1 = one-to-one); a new session's ``seats_left``.
    seats: int = 1

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ValueError(f"duration must be > 0 minutes, got {self.duration}")
        if self.interval <= 0:
            raise ValueError(f"interval must be > 0 minutes, got {self.interval}")
        if self.buffer_before < 0 or self.buffer_after < 0:
            raise ValueError("buffers must be >= 0 minutes")
        if self.min_notice < 0:
            raise ValueError(f"min_notice must be >= 0 minutes, got {self.min_notice}")
        if self.max_days_ahead < 0:
            raise ValueError(f"max_days_ahead must be >= 0 days, got {self.max_days_ahead}")
        if self.seats < 1:
            raise ValueError(f"seats must be >= 1, got {self.seats}")


@dataclass(frozen=True, slots=True)
class ExpertCalendar:
    """One expert's time: working windows in zone ``tz`` and busy instants.

    ``busy`` holds half-open ``[start, end)`` instants in any order, possibly
    overlapping, already including the buffers of existing claims. An interval with
    ``end <= start`` contains no instant and blocks nothing.

    ``sessions`` (start -> seats left, >= 0) are the expert's live sessions of the
    service being judged; their claims are *not* in ``busy`` (the caller passes only the
    parts of them outside the session's claimed range, if any): the engine lets a
    session's own start be joined and blocks every other start with it. ``closed`` holds
    the limit periods (``Periods`` keys: ``2026-12-01``, ``2026-W49``, ``2026-12``, in
    ``tz``) in which the expert takes no new session. Both empty: the one-to-one,
    unlimited engine, at its old cost.
    """

    expert_id: str
    tz: ZoneInfo
    weekly: Weekly
    overrides: Overrides = field(default_factory=dict)
    busy: Sequence[tuple[Instant, Instant]] = ()
    sessions: Mapping[Instant, int] = field(default_factory=dict)
    closed: Collection[str] = frozenset()


class Slot(NamedTuple):
    """A bookable start of one expert: ``end = start + duration`` (buffers not included).

    Ordering is by ``(start, expert_id, end)``. A one-to-one slot has one seat left; a
    slot of a service with seats is a :class:`SeatedSlot`. A tuple (the one-to-one engine
    makes hundreds of these per request, and a tuple is built in C: an empty month's
    cost is the sweep's, not the objects'); immutable, hashable, compared by value.
    """

    start: Instant
    expert_id: str
    end: Instant

    @property
    def seats_left(self) -> int:
        return 1


class SeatedSlot(Slot):
    """A slot of a service with seats: ``seats_left`` is what a hold may still take there
    (the service's ``seats`` for a new session, what its session has left for a join).
    The tuple ``(start, expert_id, end, seats_left)``."""

    __slots__ = ()
    _fields = ("start", "expert_id", "end", "seats_left")  # type: ignore[assignment]

    def __new__(cls, start: Instant, expert_id: str, end: Instant,
                seats_left: int) -> SeatedSlot:
        return tuple.__new__(cls, (start, expert_id, end, seats_left))

    @property
    def seats_left(self) -> int:
        return int(_FOURTH(self))

    def __repr__(self) -> str:
        return (f"SeatedSlot(start={self.start!r}, expert_id={self.expert_id!r}, "
                f"end={self.end!r}, seats_left={self.seats_left!r})")

    def __getnewargs__(self) -> tuple[Instant, str, Instant, int]:
        return (self.start, self.expert_id, self.end, self.seats_left)


def claimed_range(start: Instant, rules: ServiceRules) -> tuple[Instant, Instant]:
    """The half-open instants a booking at ``start`` claims, buffers included."""
    return (start - rules.buffer_before * 60,
            start + rules.duration * 60 + rules.buffer_after * 60)


# --------------------------------------------------------------------------- tz facts


def _seconds(offset: timedelta | None) -> int:
    if offset is None:  # never for a ZoneInfo; keeps the types honest
        raise ValueError("timezone without a UTC offset")
    return offset // _ONE_SECOND


def _wall(tz: ZoneInfo, instant: Instant) -> int:
    """Local wall time of ``instant`` as naive "local epoch" seconds."""
    return instant + _seconds(datetime.fromtimestamp(instant, tz).utcoffset())


@lru_cache(maxsize=32_768)
def _resolve(tz: ZoneInfo, day: date, minute: int) -> tuple[Instant, Instant, bool]:
    """The instants of wall time ``minute`` on local date ``day`` (1440 = next midnight).

    Returns ``(earlier, later, exists)``: a normal wall time gives ``(i, i, True)``, an
    ambiguous one ``(fold=0 instant, fold=1 instant, True)``, a non-existent one
    ``(t, t, False)`` where ``t`` is the instant the clock jumped over it. Pure tz facts,
    hence cached.
    """
    if minute == _MINUTES_PER_DAY:
        day += _ONE_DAY
        minute = 0
    hour, minute_of_hour = divmod(minute, 60)
    naive = datetime(day.year, day.month, day.day, hour, minute_of_hour)
    local = (day.toordinal() - _EPOCH_ORDINAL) * _DAY + minute * 60
    i0 = local - _seconds(naive.replace(tzinfo=tz).utcoffset())
    i1 = local - _seconds(naive.replace(tzinfo=tz, fold=1).utcoffset())
    real = sorted({i for i in (i0, i1) if _wall(tz, i) == local})
    if real:
        return (real[0], real[-1], True)
    jump = _jump(tz, local, min(i0, i1), max(i0, i1))
    return (jump, jump, False)


def _jump(tz: ZoneInfo, local: int, lo: Instant, hi: Instant) -> Instant:
    """The first instant whose wall time is at or after the non-existent wall ``local``.

    Bisects between the two interpretations of ``local`` (the earlier one lies before the
    jump, the later one after it), to the second.
    """
    for _ in range(8):  # widen the bracket if the interpretations do not straddle the jump
        if _wall(tz, lo) < local:
            break
        lo -= _DAY
    for _ in range(8):
        if _wall(tz, hi) >= local:
            break
        hi += _DAY
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(tz, mid) >= local:
            hi = mid
        else:
            lo = mid
    return hi


def wall_to_instant(tz: ZoneInfo, day: date, minute: int, *,
                    edge: Literal["start", "end"]) -> Instant:
    """The instant of a window edge at wall ``minute`` (0..1440) of local date ``day``.

    ``1440`` is local midnight of the next day. A wall time in a spring-forward gap maps
    to the transition instant (for either edge). An ambiguous wall time (fall back) maps
    to the earlier instant (fold=0) for ``edge="start"`` and the later one (fold=1) for
    ``edge="end"``, so a window covers every instant its wall times name.
    """
    if not 0 <= minute <= _MINUTES_PER_DAY:
        raise ValueError(f"minute must be in 0..1440, got {minute}")
    earlier, later, _ = _resolve(tz, day, minute)
    if edge == "start":
        return earlier
    if edge == "end":
        return later
    raise ValueError(f"edge must be 'start' or 'end', got {edge!r}")


def _local_date(tz: ZoneInfo, instant: Instant) -> date:
    instant = min(max(instant, _MIN_INSTANT), _MAX_INSTANT)
    return datetime.fromtimestamp(instant, tz).date()


# --------------------------------------------------------------------------- windows


def _windows_of(weekly: Weekly, overrides: Overrides, day: date) -> Sequence[tuple[int, int]]:
    if day in overrides:
        return overrides[day]
    return weekly.get(day.weekday(), ())


def _dates(weekly: Weekly, overrides: Overrides, first: date, last: date) -> Iterator[date]:
    """The local dates ``first..last`` that may have windows, ascending."""
    if any(weekly.get(weekday) for weekday in range(7)):
        day = first
        while day <= last:
            yield day
            day += _ONE_DAY
    else:  # only overrides open days: don't walk a long range date by date
        yield from sorted(day for day in overrides if first <= day <= last)


def _check_window(start_minute: int, end_minute: int) -> None:
    if not 0 <= start_minute < end_minute <= _MINUTES_PER_DAY:
        raise ValueError(
            f"window ({start_minute}, {end_minute}) must satisfy 0 <= start < end <= 1440")


def local_windows(tz: ZoneInfo, weekly: Weekly, overrides: Overrides,
                  first: date, last: date) -> list[tuple[Instant, Instant, date]]:
    """Working windows as instants ``(ws, we, local_date)`` for every local date
    ``first..last`` inclusive, sorted, with windows whose instants are empty dropped.

    Edges are converted with :func:`wall_to_instant` (start edge / end edge). Raises
    :class:`ValueError` for a window outside ``0 <= start < end <= 1440``.
    """
    out: list[tuple[Instant, Instant, date]] = []
    for day in _dates(weekly, overrides, first, last):
        for start_minute, end_minute in _windows_of(weekly, overrides, day):
            _check_window(start_minute, end_minute)
            ws = _resolve(tz, day, start_minute)[0]
            we = _resolve(tz, day, end_minute)[1]
            if ws < we:
                out.append((ws, we, day))
    out.sort()
    return out


# --------------------------------------------------------------------------- slots


def _starts(tz: ZoneInfo, weekly: Weekly, overrides: Overrides, rules: ServiceRules,
            now: Instant, range_start: Instant, range_end: Instant) -> list[Instant]:
    """Sorted distinct slot starts judged on grid, hours, notice, horizon, range (no busy)."""
    lo = max(range_start, now + rules.min_notice * 60)
    hi = min(range_end, now + rules.max_days_ahead * _DAY)
    if lo >= hi:
        return []
    step_minutes = rules.interval
    step = step_minutes * 60
    dur = rules.duration * 60
    first = max(_local_date(tz, lo) - _ONE_DAY, _FIRST_DATE)
    last = min(_local_date(tz, hi - 1) + _ONE_DAY, _LAST_DATE)
    resolve = _resolve
    starts: list[Instant] = []
    for day in _dates(weekly, overrides, first, last):
        windows = _windows_of(weekly, overrides, day)
        if windows:
            base = (day.toordinal() - _EPOCH_ORDINAL) * _DAY
            for sm, em in windows:
                _check_window(sm, em)
                s0, s1, s_real = resolve(tz, day, sm)
                e0, e1, e_real = resolve(tz, day, em)
                ws, we = s0, e1
                if we - dur < ws or we - dur < lo or ws >= hi:
                    continue  # too short for one meeting, or entirely outside [lo, hi)
                if (s_real and e_real and s0 == s1 and e0 == e1
                        and base + sm * 60 - s0 == base + em * 60 - e0):
                    # One UTC offset across the window: the wall grid is arithmetic.
                    last_start = min(we - dur, hi - 1)
                    first_start = ws if ws >= lo else ws + -((ws - lo) // step) * step
                    if first_start <= last_start:
                        starts.extend(range(first_start, last_start + 1, step))
                    continue
                # The window crosses a transition: resolve each grid wall time.
                for w in range(sm, em, step_minutes):
                    c0, c1, real = resolve(tz, day, w)
                    if not real:
                        continue  # spring-forward gap: this wall time does not exist
                    for s in (c0,) if c0 == c1 else (c0, c1):
                        if ws <= s and s + dur <= we and lo <= s < hi:
                            starts.append(s)
    if not starts:
        return starts
    # Sorted and distinct already in the normal case (ordered windows, no DST).
    if all(a < b for a, b in pairwise(starts)):
        return starts
    return sorted(set(starts))


def _free(starts: list[Instant], busy: Sequence[tuple[Instant, Instant]],
          rules: ServiceRules) -> list[Instant]:
    """The sorted ``starts`` whose claimed range overlaps no busy interval."""
    return _clear(starts, busy, rules.buffer_before * 60,
                  rules.duration * 60 + rules.buffer_after * 60)


def _clear(starts: list[Instant], busy: Sequence[tuple[Instant, Instant]], before: int,
           after: int) -> list[Instant]:
    """The sorted ``starts`` whose range ``[s - before, s + after)`` overlaps no busy
    interval.

    A claim ``[c0, c1)`` overlaps some busy ``[b0, b1)`` iff the largest ``b1`` among
    the intervals with ``b0 < c1`` exceeds ``c0``. Claims move right as starts do, so one
    pass over the starts and the busy intervals (sorted by ``b0``) decides every start.
    Intervals with ``b1 <= b0`` contain no instant and are ignored.
    """
    if not busy or not starts:
        return starts
    lo = starts[0] - before
    hi = starts[-1] + after
    relevant = [b for b in busy if b[0] < b[1] and b[1] > lo and b[0] < hi]
    n = len(relevant)
    if n == 0:
        return starts
    relevant.sort(key=_FIRST)
    out: list[Instant] = []
    i = 0
    reach = lo  # the largest busy end seen so far (none seen: nothing blocks)
    for s in starts:
        c1 = s + after
        while i < n and relevant[i][0] < c1:
            end = relevant[i][1]
            if end > reach:
                reach = end
            i += 1
        if reach <= s - before:
            out.append(s)
    return out


# --------------------------------------------------------------------------- capacity


def _first_instant(tz: ZoneInfo, day: date) -> Instant:
    """The first instant of local date ``day`` (its midnight, or the end of a gap there)."""
    return _resolve(tz, min(max(day, _FIRST_DATE), _LAST_DATE), 0)[0]


@lru_cache(maxsize=8192)
def period_range(tz: ZoneInfo, key: str) -> tuple[Instant, Instant]:
    """The half-open instants of a limit period of zone ``tz``: a local day
    ``YYYY-MM-DD``, an ISO week ``YYYY-Www`` (Monday first) or a month ``YYYY-MM``
    (engine.domain.capacity ``Periods`` keys). Raises :class:`ValueError` for any other
    text. Pure tz facts, hence cached."""
    try:
        if len(key) == 10:
            first = date.fromisoformat(key)
            last = first + _ONE_DAY
        elif len(key) == 8 and key[4:6] == "-W":
            first = date.fromisocalendar(int(key[:4]), int(key[6:]), 1)
            last = first + timedelta(days=7)
        elif len(key) == 7 and key[4] == "-":
            year, month = int(key[:4]), int(key[5:])
            first = date(year, month, 1)
            last = date(year + month // 12, month % 12 + 1, 1)
        else:
            raise ValueError
    except (ValueError, OverflowError):
        raise ValueError(f"not a limit period: {key!r}") from None
    return (_first_instant(tz, first), _first_instant(tz, last))


def _open_periods(starts: list[Instant], tz: ZoneInfo, closed: Collection[str]
                  ) -> list[Instant]:
    """The sorted ``starts`` that lie in none of the ``closed`` periods."""
    if not closed or not starts:
        return starts
    return _clear(starts, [period_range(tz, key) for key in closed], 0, 1)


def _seated(starts: list[Instant], cal: ExpertCalendar, rules: ServiceRules
            ) -> list[tuple[Instant, int]]:
    """``(start, seats_left)`` of every offered start when the calendar has sessions or
    closed periods (see the module docstring): new sessions and joins, sorted."""
    sessions = cal.sessions
    before = rules.buffer_before * 60
    after = rules.duration * 60 + rules.buffer_after * 60
    length = before + after
    # Every session is busy for every start but its own.
    taken = sorted(sessions)
    blocked = [(t - before, t + after) for t in taken]
    fresh = _free(starts, [*cal.busy, *blocked] if blocked else cal.busy, rules)
    fresh = _open_periods(fresh, cal.tz, cal.closed)
    out = [(s, rules.seats) for s in fresh]
    if taken:
        grid = set(starts)
        open_ = [t for t in taken if sessions[t] > 0 and t in grid]
        joins = set(_free(open_, cal.busy, rules))
        # Sessions all claim the same length: the nearest ones are the only ones that
        # can overlap a session, whichever way.
        for k, t in enumerate(taken):
            if t not in joins:
                continue
            if k > 0 and t - taken[k - 1] < length:
                continue
            if k + 1 < len(taken) and taken[k + 1] - t < length:
                continue
            out.append((t, sessions[t]))
        out.sort()
    return out


def _check_range(range_start: Instant, range_end: Instant) -> None:
    if range_start > range_end:
        raise ValueError("range_start must not be after range_end")


def expert_slots(cal: ExpertCalendar, rules: ServiceRules, *, now: Instant,
                 range_start: Instant, range_end: Instant) -> list[Slot]:
    """Slots of one expert whose start lies in ``[range_start, range_end)``, sorted by
    start, each start once.

    Local dates evaluated: those of the range (after clamping to notice and horizon) in
    ``cal.tz``, widened by one day on each side; starts are then filtered by the range.
    Sessions and closed periods decide as the module docstring says.
    """
    _check_range(range_start, range_end)
    starts = _starts(cal.tz, cal.weekly, cal.overrides, rules, now, range_start, range_end)
    eid = cal.expert_id
    dur = rules.duration * 60
    if cal.sessions or cal.closed:
        return [SeatedSlot(s, eid, s + dur, left) if rules.seats > 1 else Slot(s, eid, s + dur)
                for s, left in _seated(starts, cal, rules)]
    starts = _free(starts, cal.busy, rules)
    if rules.seats > 1:
        seats = rules.seats
        return [SeatedSlot(s, eid, s + dur, seats) for s in starts]
    new = tuple.__new__
    return [new(Slot, (s, eid, s + dur)) for s in starts]


def merged_slots(cals: Sequence[ExpertCalendar], rules: ServiceRules, *, now: Instant,
                 range_start: Instant, range_end: Instant) -> list[Slot]:
    """All experts' slots (see :func:`expert_slots`), sorted by ``(start, expert_id)``;
    each ``(start, expert_id)`` pair appears once even if an expert is listed twice."""
    _check_range(range_start, range_end)
    out: list[Slot] = []
    for cal in sorted(cals, key=_BY_EXPERT):
        out.extend(expert_slots(cal, rules, now=now, range_start=range_start,
                                range_end=range_end))
    # Stable sort by start of a list already ordered by expert id = (start, expert_id).
    out.sort(key=_BY_START)
    if len({cal.expert_id for cal in cals}) != len(cals):
        deduped: list[Slot] = []
        for slot in out:
            if not deduped or (deduped[-1].start, deduped[-1].expert_id) != (
                    slot.start, slot.expert_id):
                deduped.append(slot)
        out = deduped
    return out


def is_offered(cal: ExpertCalendar, rules: ServiceRules, *, now: Instant,
               start: Instant) -> bool:
    """Whether ``start`` is a slot of this expert judged on grid, hours, notice and
    horizon, ignoring ``cal.busy``, ``cal.sessions`` and ``cal.closed``.

    Agrees exactly with membership in ``expert_slots(replace(cal, busy=()), ...)`` for
    any range containing ``start``; evaluates only the local dates around ``start``.
    """
    return bool(_starts(cal.tz, cal.weekly, cal.overrides, rules, now, start, start + 1))
