"""The slot engine agrees with the benchmark's reference sweep (benchmarks/bench_slots.py
``reference_slots``: the barest correct sweep, no caches), so the side-by-side ratio the
benchmark prints compares two implementations of the same answer."""

from __future__ import annotations

import importlib.util
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.slots import ExpertCalendar, ServiceRules, expert_slots


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_slots.py"
    spec = importlib.util.spec_from_file_location("bench_slots_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()
ZONES = [ZoneInfo(z) for z in ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe",
                               "Asia/Kolkata", "UTC")]
# Around the 2026 transitions of both hemispheres.
FIRSTS = [date(2026, 3, 26), date(2026, 10, 22), date(2026, 4, 2), date(2026, 6, 1)]


@st.composite
def windows(draw: st.DrawFn) -> list[tuple[int, int]]:
    out = []
    for _ in range(draw(st.integers(0, 2))):
        a = draw(st.integers(0, 1439))
        b = draw(st.integers(a + 1, 1440))
        out.append((a, b))
    return sorted(out)


@settings(max_examples=150, deadline=None)
@given(tz=st.sampled_from(ZONES), first=st.sampled_from(FIRSTS),
       weekly=st.dictionaries(st.integers(0, 6), windows(), max_size=7),
       duration=st.sampled_from([15, 30, 45, 60, 90]),
       interval=st.sampled_from([10, 15, 30, 60]),
       before=st.sampled_from([0, 5, 15]), after=st.sampled_from([0, 10]),
       notice=st.sampled_from([0, 60, 24 * 60]), ahead=st.sampled_from([3, 10, 60]),
       busy=st.lists(st.tuples(st.integers(0, 14 * 96), st.integers(-2, 12)), max_size=25),
       days=st.integers(1, 14))
def test_engine_equals_reference_sweep(tz: ZoneInfo, first: date,
                                       weekly: dict[int, list[tuple[int, int]]],
                                       duration: int, interval: int, before: int, after: int,
                                       notice: int, ahead: int, busy: list[tuple[int, int]],
                                       days: int) -> None:
    start = int(datetime(first.year, first.month, first.day, tzinfo=tz).timestamp())
    end = int(datetime.combine(first + timedelta(days=days), datetime.min.time(),
                               tzinfo=tz).timestamp())
    now = int((datetime(first.year, first.month, first.day, tzinfo=UTC)
               - timedelta(hours=6)).timestamp())
    intervals = [(start + q * 900, start + q * 900 + length * 900) for q, length in busy]
    cal = ExpertCalendar(expert_id="e", tz=tz, weekly=weekly, busy=intervals)
    rules = ServiceRules(duration=duration, interval=interval, buffer_before=before,
                         buffer_after=after, min_notice=notice, max_days_ahead=ahead)
    got = [(s.start, s.end) for s in expert_slots(cal, rules, now=now, range_start=start,
                                                   range_end=end)]
    assert got == BENCH.reference_slots(cal, rules, now=now, range_start=start,
                                        range_end=end)


def test_the_benchmark_scenarios_agree() -> None:
    for cal in (BENCH.calendar(0), BENCH.calendar(0, with_busy=False),
                BENCH.calendar(0, weekly={d: [(0, 1440)] for d in range(7)})):
        got = [(s.start, s.end) for s in expert_slots(
            cal, BENCH.RULES, now=BENCH.NOW, range_start=BENCH.RANGE_START,
            range_end=BENCH.RANGE_END)]
        assert got and got == BENCH.reference_slots(
            cal, BENCH.RULES, now=BENCH.NOW, range_start=BENCH.RANGE_START,
            range_end=BENCH.RANGE_END)
