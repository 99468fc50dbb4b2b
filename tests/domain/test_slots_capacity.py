"""The slot engine with seats and limits as inputs (``ExpertCalendar.sessions`` and
``closed``), pure: examples, and hypothesis properties that pin the rule exactly --
an offered start is a free new session outside every closed period, or a join of a
session with seats left whose range overlaps nothing but itself; nothing else is
offered, and every such start is."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.capacity import periods_at
from engine.domain.slots import (
    ExpertCalendar,
    SeatedSlot,
    ServiceRules,
    Slot,
    claimed_range,
    expert_slots,
    merged_slots,
    period_range,
)

BERLIN = ZoneInfo("Europe/Berlin")
ZONES = [ZoneInfo(n) for n in ("Europe/Berlin", "Pacific/Auckland", "America/New_York",
                               "Asia/Kolkata", "Pacific/Kiritimati", "America/St_Johns",
                               "Australia/Lord_Howe", "UTC")]
WEEKDAYS = {d: [(9 * 60, 17 * 60)] for d in range(5)}


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


TUE_0 = ts("2026-12-01T00:00:00")  # Tuesday; 09:00 Berlin = 08:00Z
NOW = ts("2026-11-30T12:00:00")
RULES = ServiceRules(duration=60, interval=60, seats=3)


def starts(cal: ExpertCalendar, rules: ServiceRules = RULES, days: int = 1) -> list[int]:
    return [s.start for s in expert_slots(cal, rules, now=NOW, range_start=TUE_0,
                                          range_end=TUE_0 + days * 86400)]


def cal(**kw: object) -> ExpertCalendar:
    return ExpertCalendar("e", BERLIN, WEEKDAYS, **kw)  # type: ignore[arg-type]


def test_new_sessions_carry_the_services_seats_and_joins_what_is_left() -> None:
    ten = ts("2026-12-01T09:00:00")
    got = expert_slots(cal(sessions={ten: 2}), RULES, now=NOW, range_start=TUE_0,
                       range_end=TUE_0 + 86400)
    assert len(got) == 8
    assert [s.seats_left for s in got if s.start == ten] == [2]
    assert {s.seats_left for s in got if s.start != ten} == {3}


def test_a_full_session_is_busy_and_blocks_its_neighbours() -> None:
    ten = ts("2026-12-01T09:00:00")
    rules = replace(RULES, interval=30)  # 60-minute sessions every 30 minutes
    got = starts(cal(sessions={ten: 0}), rules)
    assert ten not in got and ten - 1800 not in got and ten + 1800 not in got
    assert ten - 3600 in got and ten + 3600 in got
    # A session with seats is joined at its start only; its neighbours stay blocked.
    got = starts(cal(sessions={ten: 1}), rules)
    assert ten in got and ten - 1800 not in got and ten + 1800 not in got


def test_a_join_is_blocked_by_other_busy_time_and_other_sessions() -> None:
    ten = ts("2026-12-01T09:00:00")
    rules = replace(RULES, interval=30)
    assert ten not in starts(cal(sessions={ten: 2}, busy=[(ten + 3000, ten + 3100)]), rules)
    assert ten not in starts(cal(sessions={ten: 2, ten + 1800: 0}), rules)
    assert ten not in starts(cal(sessions={ten: 2, ten - 1800: 2}), rules)


def test_closed_periods_hide_new_sessions_but_not_joins() -> None:
    ten = ts("2026-12-01T09:00:00")
    c = cal(sessions={ten: 1}, closed={"2026-12-01"})
    assert starts(c, days=2) == [ten] + [ts("2026-12-02T08:00:00") + 3600 * k
                                         for k in range(8)]
    assert starts(cal(closed={"2026-W49"}), days=6) == []  # Tuesday to Sunday
    assert len(starts(cal(closed={"2026-W49"}), days=7)) == 8  # Monday 7 December
    assert starts(cal(closed={"2026-12"}), days=1) == []
    assert len(starts(cal(closed={"2026-11", "2026-W48", "2026-12-02"}), days=1)) == 8


def test_sessions_of_a_one_seat_service_and_merged_slots() -> None:
    ten = ts("2026-12-01T09:00:00")
    one = replace(RULES, seats=1)
    assert [s.seats_left for s in expert_slots(cal(), one, now=NOW, range_start=TUE_0,
                                               range_end=TUE_0 + 86400)] == [1] * 8
    a = ExpertCalendar("a", BERLIN, WEEKDAYS, sessions={ten: 1}, closed={"2026-12-01"})
    b = ExpertCalendar("b", BERLIN, WEEKDAYS)
    got = merged_slots([b, a], RULES, now=NOW, range_start=TUE_0, range_end=TUE_0 + 86400)
    assert [s for s in got if s.expert_id == "a"] == [SeatedSlot(ten, "a", ten + 3600, 1)]
    assert len(got) == 9


@pytest.mark.parametrize(("key", "first", "last"), [
    ("2026-12-01", "2026-11-30T23:00:00", "2026-12-01T23:00:00"),
    ("2026-W53", "2026-12-27T23:00:00", "2027-01-03T23:00:00"),  # 2027-01-01 is in it
    ("2026-12", "2026-11-30T23:00:00", "2026-12-31T23:00:00"),
    ("2026-03-29", "2026-03-28T23:00:00", "2026-03-29T22:00:00"),  # 23 hours
])
def test_period_range(key: str, first: str, last: str) -> None:
    assert period_range(BERLIN, key) == (ts(first), ts(last))


@pytest.mark.parametrize("key", ["", "2026", "2026-13", "2026-W54", "2026-02-30", "20261201",
                                 "2026-12-1x", "abcd-Wef"])
def test_period_range_refuses_other_text(key: str) -> None:
    with pytest.raises(ValueError, match="not a limit period"):
        period_range(BERLIN, key)


# --------------------------------------------------------------------------- properties

HOUR = 3600


@st.composite
def scenario(draw: st.DrawFn) -> tuple[ExpertCalendar, ServiceRules, int, int]:
    tz = draw(st.sampled_from(ZONES))
    duration = draw(st.sampled_from([15, 30, 45, 60, 90]))
    interval = draw(st.sampled_from([15, 30, 60, duration]))
    rules = ServiceRules(duration=duration, interval=interval,
                         buffer_before=draw(st.sampled_from([0, 0, 10, 30])),
                         buffer_after=draw(st.sampled_from([0, 0, 15])),
                         seats=draw(st.integers(1, 5)))
    first_day = date(2026, 1, 1).toordinal() + draw(st.integers(0, 700))
    lo = int(datetime.combine(date.fromordinal(first_day), datetime.min.time(),
                              tzinfo=UTC).timestamp())
    days = draw(st.integers(1, 9))
    hi = lo + days * 86400
    weekly = {d: [(draw(st.integers(0, 10)) * 60, draw(st.integers(12, 24)) * 60)]
              for d in draw(st.sets(st.integers(0, 6), min_size=1))}
    base = ExpertCalendar("e", tz, weekly)
    grid = [s.start for s in expert_slots(base, rules, now=lo - 86400, range_start=lo - 86400,
                                          range_end=hi + 86400)]
    sessions: dict[int, int] = {}
    if grid:
        for t in draw(st.lists(st.sampled_from(grid), max_size=8)):
            sessions[t] = draw(st.integers(0, rules.seats))
        sessions = {t: n for t, n in sessions.items()}
    busy = [(a, a + draw(st.integers(1, 4 * HOUR)))
            for a in draw(st.lists(st.integers(lo - 86400, hi + 86400), max_size=6))]
    closed: set[str] = set()
    if grid:
        for t in draw(st.lists(st.sampled_from(grid), max_size=4)):
            p = periods_at(t, tz)
            closed.add(draw(st.sampled_from([p.day, p.day, p.week, p.month])))
    cal = ExpertCalendar("e", tz, weekly, busy=busy, sessions=sessions, closed=closed)
    return cal, rules, lo, hi


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1] and b[0] < b[1]


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_offered_is_exactly_free_new_sessions_and_open_joins(
        sc: tuple[ExpertCalendar, ServiceRules, int, int]) -> None:
    cal, rules, lo, hi = sc
    now = lo - 86400
    got = expert_slots(cal, rules, now=now, range_start=lo, range_end=hi)
    grid = [s.start for s in expert_slots(ExpertCalendar(cal.expert_id, cal.tz, cal.weekly),
                                          rules, now=now, range_start=lo, range_end=hi)]
    ranges = {t: claimed_range(t, rules) for t in cal.sessions}

    def slot(s: int, left: int) -> Slot:
        end = s + rules.duration * 60
        return SeatedSlot(s, "e", end, left) if rules.seats > 1 else Slot(s, "e", end)

    expected = []
    for s in grid:
        mine = claimed_range(s, rules)
        if any(_overlaps(mine, b) for b in cal.busy):
            continue
        others = [r for t, r in ranges.items() if t != s]
        if any(_overlaps(mine, r) for r in others):
            continue
        if s in cal.sessions:
            if cal.sessions[s] > 0:
                expected.append(slot(s, cal.sessions[s]))
            continue
        p = periods_at(s, cal.tz)
        if {p.day, p.week, p.month} & set(cal.closed):
            continue
        expected.append(slot(s, rules.seats))
    assert got == expected
    assert [s.seats_left for s in got] == [s.seats_left for s in expected]
    # No sessions and no limits: the engine of one-to-one services, unchanged.
    plain = replace(cal, sessions={}, closed=frozenset())
    assert [s.start for s in expert_slots(plain, rules, now=now, range_start=lo,
                                          range_end=hi)] == [
        s for s in grid if not any(_overlaps(claimed_range(s, rules), b) for b in cal.busy)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ZONES), st.integers(ts("2011-06-01T00:00:00"),
                                           ts("2037-12-31T00:00:00")))
def test_period_range_agrees_with_periods_at(tz: ZoneInfo, instant: int) -> None:
    p = periods_at(instant, tz)
    for key in (p.day, p.week, p.month):
        a, b = period_range(tz, key)
        assert a <= instant < b
    # ... and the neighbouring instants of the day's edges fall outside it.
    a, b = period_range(tz, p.day)
    assert periods_at(a - 1, tz).day != p.day and periods_at(b, tz).day != p.day
