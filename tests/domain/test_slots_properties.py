"""Hypothesis properties of the slot engine (engine.domain.slots).

Random zones (the awkward ones included), random weekly hours and overrides, random
service rules, busy intervals and ranges, with the local dates drawn near the zones' UTC
offset transitions more often than not. Every property is checked against facts computed
here independently with :mod:`zoneinfo` (window edges, real instants of a wall time), not
with the engine's own helpers, and a brute-force reference implementation pins the exact
set of starts (so missing slots fail as well as wrong ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.domain.slots import (
    ExpertCalendar,
    Instant,
    ServiceRules,
    Slot,
    expert_slots,
    is_offered,
    merged_slots,
)

ZONES = [ZoneInfo(name) for name in (
    "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
    "Australia/Lord_Howe", "Pacific/Apia", "Europe/Dublin", "Pacific/Chatham",
    "America/St_Johns", "UTC")]
DAY = 86_400
Scenario = dict[str, Any]
PROPS = settings(max_examples=100, deadline=None, derandomize=False,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------- tz facts
# Computed here from datetime/zoneinfo directly, independently of the engine.


def _posix(naive: datetime, tz: ZoneInfo, fold: int) -> Instant:
    return int(naive.replace(tzinfo=tz, fold=fold).timestamp())


def _wall(tz: ZoneInfo, instant: Instant) -> datetime:
    return datetime.fromtimestamp(instant, tz).replace(tzinfo=None)


def _naive(day: date, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day) + timedelta(minutes=minute)


@cache
def real_instants(tz: ZoneInfo, day: date, minute: int) -> tuple[Instant, ...]:
    """Every instant whose wall clock in ``tz`` reads ``day`` + ``minute`` (sorted)."""
    naive = _naive(day, minute)
    return tuple(sorted({i for i in (_posix(naive, tz, 0), _posix(naive, tz, 1))
                         if _wall(tz, i) == naive}))


@cache
def jump_instant(tz: ZoneInfo, day: date, minute: int) -> Instant:
    """For a wall time that does not exist: the first instant whose wall clock is later."""
    naive = _naive(day, minute)
    a, b = sorted((_posix(naive, tz, 0), _posix(naive, tz, 1)))
    assert _wall(tz, a) < naive <= _wall(tz, b)
    while b - a > 1:
        mid = (a + b) // 2
        if _wall(tz, mid) >= naive:
            b = mid
        else:
            a = mid
    return b


def edge(tz: ZoneInfo, day: date, minute: int, *, start: bool) -> Instant:
    real = real_instants(tz, day, minute)
    if not real:
        return jump_instant(tz, day, minute)
    return real[0] if start else real[-1]


def windows_of(cal: ExpertCalendar, day: date) -> Sequence[tuple[int, int]]:
    if day in cal.overrides:
        return cal.overrides[day]
    return cal.weekly.get(day.weekday(), ())


def local_date(tz: ZoneInfo, instant: Instant) -> date:
    return datetime.fromtimestamp(instant, tz).date()


@cache
def transition_days(tz: ZoneInfo) -> tuple[date, ...]:
    """Local dates (2008-2030) on which the zone's UTC offset changes."""
    out = []
    t = int(datetime(2008, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2030, 12, 31, tzinfo=UTC).timestamp())
    offset = datetime.fromtimestamp(t, tz).utcoffset()
    while t < end:
        t += 6 * 3600
        now = datetime.fromtimestamp(t, tz).utcoffset()
        if now != offset:
            out.append(local_date(tz, t))
            offset = now
    return tuple(out) or (date(2026, 6, 1),)


# --------------------------------------------------------------------------- reference


def bounds(rules: ServiceRules, now: Instant, range_start: Instant,
           range_end: Instant) -> tuple[Instant, Instant]:
    return (max(range_start, now + rules.min_notice * 60),
            min(range_end, now + rules.max_days_ahead * DAY))


def reference_starts(cal: ExpertCalendar, rules: ServiceRules, now: Instant,
                     range_start: Instant, range_end: Instant) -> list[Instant]:
    """Brute force: every grid wall time of every window of every local date near the
    range, each real instant of it, kept iff the meeting fits the window's instants and
    the start is inside notice, horizon and range. Busy time is ignored."""
    lo, hi = bounds(rules, now, range_start, range_end)
    if lo >= hi:
        return []
    dur = rules.duration * 60
    out: set[Instant] = set()
    day = local_date(cal.tz, lo) - timedelta(days=2)
    last = local_date(cal.tz, hi - 1) + timedelta(days=2)
    while day <= last:
        for sm, em in windows_of(cal, day):
            ws = edge(cal.tz, day, sm, start=True)
            we = edge(cal.tz, day, em, start=False)
            for w in range(sm, em, rules.interval):
                for s in real_instants(cal.tz, day, w):
                    if ws <= s and s + dur <= we and lo <= s < hi:
                        out.add(s)
        day += timedelta(days=1)
    return sorted(out)


def overlaps(a: tuple[Instant, Instant], b: tuple[Instant, Instant]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def claim(start: Instant, rules: ServiceRules) -> tuple[Instant, Instant]:
    return (start - rules.buffer_before * 60,
            start + (rules.duration + rules.buffer_after) * 60)


# --------------------------------------------------------------------------- strategies

# Window edges: a few that sit on typical transition hours, plus anything on 5 minutes.
TRICKY_MINUTES = [0, 60, 90, 120, 135, 150, 165, 180, 225, 240, 1380, 1410]


@st.composite
def a_window(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(st.sampled_from(TRICKY_MINUTES) | st.integers(0, 287).map(lambda k: k * 5)
                 | st.integers(0, 1439))
    end = draw(st.just(1440) | st.integers(start + 1, min(1440, start + 600))
               | st.sampled_from([m for m in [*TRICKY_MINUTES, 1440] if m > start] or [1440]))
    return (start, end)


WINDOWS = st.lists(a_window(), min_size=1, max_size=3) | st.lists(a_window(), max_size=3)


@st.composite
def scenario(draw: st.DrawFn, experts: int = 1) -> Scenario:
    """Calendars, rules, ``now`` and a range, anchored near a transition of the first
    expert's zone most of the time."""
    tzs = [draw(st.sampled_from(ZONES)) for _ in range(experts)]
    anchor_tz = tzs[0]
    if draw(st.booleans()):
        anchor = draw(st.sampled_from(transition_days(anchor_tz)))
    elif anchor_tz.key == "Pacific/Apia" and draw(st.booleans()):
        anchor = date(2011, 12, 30)  # the day that does not exist
    else:
        anchor = date(2010, 1, 1) + timedelta(days=draw(st.integers(0, 20 * 365)))
    anchor_instant = int(datetime(anchor.year, anchor.month, anchor.day, tzinfo=UTC).timestamp())
    cals = []
    for i, tz in enumerate(tzs):
        days = draw(st.just(set(range(7))) | st.sets(st.integers(0, 6), max_size=7))
        weekly = {d: draw(WINDOWS) for d in days}
        overrides = {anchor + timedelta(days=off): draw(WINDOWS)
                     for off in draw(st.sets(st.integers(-3, 3), max_size=4))}
        if draw(st.booleans()):  # open hours across the small hours of the anchor date
            start = draw(st.sampled_from([0, 30, 60, 90, 120, 135]))
            end = draw(st.sampled_from([150, 165, 180, 200, 240, 300, 1440]))
            overrides[anchor] = [(start, end), *draw(st.lists(a_window(), max_size=1))]
        busy = []
        for _ in range(draw(st.integers(0, 12))):
            b0 = anchor_instant + draw(st.integers(-2 * DAY, 3 * DAY)) // 300 * 300
            b1 = b0 + draw(st.integers(-1800, 6 * 3600)) // 60 * 60  # some empty/inverted
            busy.append((b0, b1))
        cals.append(ExpertCalendar(expert_id=f"e{i}", tz=tz, weekly=weekly,
                                   overrides=overrides, busy=tuple(busy)))
    duration = draw(st.sampled_from([15, 30, 45, 60, 90]) | st.integers(1, 120)
                    | st.integers(1, 600))
    interval = draw(st.just(duration) | st.sampled_from([15, 20, 30, 45, 60])
                    | st.integers(5, 240))
    rules = ServiceRules(
        duration=duration, interval=interval,
        buffer_before=draw(st.sampled_from([0, 0, 5, 15]) | st.integers(0, 120)),
        buffer_after=draw(st.sampled_from([0, 0, 10, 30]) | st.integers(0, 120)),
        min_notice=draw(st.sampled_from([0, 0, 60, 1440]) | st.integers(0, 5000)),
        max_days_ahead=draw(st.sampled_from([60, 60, 60, 0, 1, 2]) | st.integers(0, 10)),
    )
    if draw(st.booleans()):  # the whole anchor date, whatever the zone's offset
        range_start = anchor_instant - DAY + draw(st.integers(-3600, 3600))
        range_end = range_start + 3 * DAY
    else:
        range_start = anchor_instant + draw(st.integers(-2 * DAY, DAY))
        range_end = range_start + draw(st.integers(DAY, 4 * DAY) | st.integers(0, 4 * DAY))
    now = range_start - draw(st.integers(0, 2 * DAY) | st.integers(-2 * DAY, 5 * DAY))
    return {"cals": cals, "rules": rules, "now": now, "range_start": range_start,
            "range_end": range_end}


def slots_of(cal: ExpertCalendar, rules: ServiceRules, now: Instant, a: Instant,
             b: Instant) -> list[Slot]:
    return expert_slots(cal, rules, now=now, range_start=a, range_end=b)


# --------------------------------------------------------------------------- properties


@PROPS
@given(scenario())
def test_every_slot_is_sound(sc: Scenario) -> None:
    cal: ExpertCalendar = sc["cals"][0]
    rules: ServiceRules = sc["rules"]
    now, a, b = sc["now"], sc["range_start"], sc["range_end"]
    got = slots_of(cal, rules, now, a, b)
    starts = [s.start for s in got]
    dur = rules.duration * 60
    # Sorted, strictly increasing, hence unique: no instant twice on a fall-back night.
    assert all(x < y for x, y in pairwise(starts)), starts
    assert len(set(starts)) == len(starts)
    lo, hi = bounds(rules, now, a, b)
    for slot in got:
        assert slot.expert_id == cal.expert_id
        assert slot.end == slot.start + dur
        # Range, notice (inclusive) and horizon (exclusive).
        assert a <= slot.start < b
        assert slot.start >= now + rules.min_notice * 60
        assert slot.start < now + rules.max_days_ahead * DAY
        assert lo <= slot.start < hi
        # Buffers included, no busy interval is touched (both half-open).
        claimed = claim(slot.start, rules)
        for busy in cal.busy:
            assert not (busy[0] < busy[1] and overlaps(claimed, busy)), (slot, busy)
        # Inside a window of its local date, and on that window's wall-clock grid (or the
        # transition instant that a window start inside a spring-forward gap moved to).
        day = local_date(cal.tz, slot.start)
        wall = _wall(cal.tz, slot.start)
        wall_minute = (wall - _naive(day, 0)) // timedelta(minutes=1)
        homes = []
        for sm, em in windows_of(cal, day):
            ws = edge(cal.tz, day, sm, start=True)
            we = edge(cal.tz, day, em, start=False)
            if not (ws <= slot.start and slot.end <= we):
                continue
            on_grid = sm <= wall_minute < em and (wall_minute - sm) % rules.interval == 0
            at_gap_start = not real_instants(cal.tz, day, sm) and slot.start == ws
            if on_grid or at_gap_start:
                homes.append((sm, em))
        assert homes, (slot, day, wall, windows_of(cal, day))


@PROPS
@given(scenario())
def test_exactly_the_reference_starts(sc: Scenario) -> None:
    """Complete as well as sound: the engine offers every start the brute force finds."""
    cal: ExpertCalendar = sc["cals"][0]
    rules: ServiceRules = sc["rules"]
    now, a, b = sc["now"], sc["range_start"], sc["range_end"]
    free = replace(cal, busy=())
    expected = reference_starts(free, rules, now, a, b)
    assert [s.start for s in slots_of(free, rules, now, a, b)] == expected
    live = [b_ for b_ in cal.busy if b_[0] < b_[1]]
    expected_busy = [s for s in expected if not any(overlaps(claim(s, rules), x) for x in live)]
    assert [s.start for s in slots_of(cal, rules, now, a, b)] == expected_busy


@PROPS
@given(scenario(), st.data())
def test_is_offered_agrees_with_expert_slots_without_busy(sc: Scenario,
                                                          data: st.DataObject) -> None:
    cal: ExpertCalendar = sc["cals"][0]
    rules: ServiceRules = sc["rules"]
    now, a, b = sc["now"], sc["range_start"], sc["range_end"]
    wide_a, wide_b = a - 2 * DAY, b + 2 * DAY
    offered = {s.start for s in slots_of(replace(cal, busy=()), rules, now, wide_a, wide_b)}
    sample = sorted(offered)[:: max(1, len(offered) // 40)]  # keep it quick
    probes = set(sample)
    probes |= {s + d for s in sample for d in (-60, -1, 1, 60)}
    probes |= set(data.draw(st.lists(st.integers(a - DAY, b + DAY), max_size=40)))
    for t in sorted(probes):
        if wide_a <= t < wide_b:
            assert is_offered(cal, rules, now=now, start=t) == (t in offered), t


@PROPS
@given(scenario(), st.data())
def test_splitting_the_range_changes_nothing(sc: Scenario, data: st.DataObject) -> None:
    cal: ExpertCalendar = sc["cals"][0]
    rules: ServiceRules = sc["rules"]
    now, a, c = sc["now"], sc["range_start"], sc["range_end"]
    cuts = sorted(data.draw(st.lists(st.integers(a, c), max_size=3)))
    edges = [a, *cuts, c]
    pieces: list[Slot] = []
    for x, y in pairwise(edges):
        pieces.extend(slots_of(cal, rules, now, x, y))
    assert pieces == slots_of(cal, rules, now, a, c)


@settings(PROPS, max_examples=50)
@given(scenario(experts=3), st.booleans())
def test_merged_is_the_sorted_union(sc: Scenario, repeat: bool) -> None:
    cals: list[ExpertCalendar] = sc["cals"]
    rules: ServiceRules = sc["rules"]
    now, a, b = sc["now"], sc["range_start"], sc["range_end"]
    union = sorted(s for cal in cals for s in slots_of(cal, rules, now, a, b))
    given_cals = cals + cals[:1] if repeat else cals  # an expert listed twice counts once
    got = merged_slots(list(reversed(given_cals)), rules, now=now, range_start=a,
                       range_end=b)
    assert got == union
    assert [(s.start, s.expert_id) for s in got] == sorted((s.start, s.expert_id) for s in got)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ZONES), st.data())
def test_fall_back_night_offers_each_real_instant_once(tz: ZoneInfo, data: st.DataObject
                                                       ) -> None:
    """All-day window on every date with an offset change: each grid instant once."""
    day = data.draw(st.sampled_from(transition_days(tz)))
    interval = data.draw(st.sampled_from([5, 15, 30, 45, 60]))
    rules = ServiceRules(duration=interval, interval=interval, max_days_ahead=10**6)
    cal = ExpertCalendar("e", tz, {}, {day: [(0, 1440)]})
    a = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) - 2 * DAY
    b = a + 5 * DAY
    got = [s.start for s in expert_slots(cal, rules, now=0, range_start=a, range_end=b)]
    assume(got)
    assert got == sorted(set(got))
    assert got == reference_starts(cal, rules, 0, a, b)
    # The window covers every real instant of the day; meetings tile it gap-free when the
    # grid instants are a fixed step apart in real time.
    ws = edge(tz, day, 0, start=True)
    we = edge(tz, day, 1440, start=False)
    assert ws <= got[0] and got[-1] + interval * 60 <= we
