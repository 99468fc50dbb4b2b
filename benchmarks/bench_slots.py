"""Benchmark of the pure slot engine (engine.domain.slots).

Run: ``python benchmarks/bench_slots.py`` (``--runs N`` to change the count). Scenarios use
fixed data: 31 days of Mon-Sun 09:00-17:00 in Europe/Berlin (the range crosses the
2026-03-29 spring-forward date, which stays on the fast path because the transition is
outside the working window), 30-minute slots, 500 busy intervals drawn with a seeded
random generator. Targets (median): one expert <= 1 ms; twenty experts merged <= 20 ms.
Each row with a reference also times ``reference_slots`` (the barest correct sweep:
no caches, plain tuples) on the same calendars, interleaved with the engine, and
prints engine / reference (target <= 1.5 at every size, the empty month included).
Exits 1 if a target is missed. The other rows are for information: the first call for
a zone and dates (tz facts not yet cached), no busy time (every slot built), windows
00:00-24:00 (the spring-forward date takes the per-wall-time path), and is_offered.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from engine.domain import slots
from engine.domain.slots import (
    ExpertCalendar,
    Instant,
    ServiceRules,
    Slot,
    Weekly,
    expert_slots,
    is_offered,
    merged_slots,
)

TZ = ZoneInfo("Europe/Berlin")
FIRST = date(2026, 3, 16)
DAYS = 31
WEEKLY = {d: [(9 * 60, 17 * 60)] for d in range(7)}
RULES = ServiceRules(duration=30, interval=30)
NOW = int(datetime(2026, 3, 15, 12, 0, tzinfo=UTC).timestamp())
RANGE_START = int(datetime(2026, 3, 16, tzinfo=TZ).timestamp())
RANGE_END = int(datetime(2026, 4, 16, tzinfo=TZ).timestamp())
# The engine's median over the reference sweep's (reference_slots), at most.
REFERENCE_RATIO = 1.5


def busy(seed: int, count: int = 500) -> list[tuple[Instant, Instant]]:
    """``count`` random intervals of 15..60 minutes on 5-minute marks over the range
    (any hour of the day, unsorted, some overlapping)."""
    rng = random.Random(seed)
    marks = (RANGE_END - RANGE_START) // 300
    out = []
    for _ in range(count):
        start = RANGE_START + rng.randrange(marks) * 300
        out.append((start, start + rng.randrange(3, 13) * 300))
    return out


def calendar(i: int, *, weekly: Weekly = WEEKLY, with_busy: bool = True) -> ExpertCalendar:
    return ExpertCalendar(expert_id=f"expert-{i:02d}", tz=TZ, weekly=weekly,
                          busy=busy(i) if with_busy else ())


# --------------------------------------------------------------------------- reference


def _edge(tz: ZoneInfo, day: date, minute: int, fold: int) -> Instant:
    """Wall ``minute`` (1440: next midnight) of ``day`` as an instant, ``fold`` as given."""
    if minute == 1440:
        day, minute = day + timedelta(days=1), 0
    return int(datetime(day.year, day.month, day.day, minute // 60, minute % 60,
                        tzinfo=tz, fold=fold).timestamp())


def reference_slots(cal: ExpertCalendar, rules: ServiceRules, *, now: Instant,
                    range_start: Instant, range_end: Instant) -> list[tuple[Instant, Instant]]:
    """The barest correct sweep: ``(start, end)`` of one expert's slots, sorted (busy time,
    notice, horizon, range; no sessions or limits). Per local date, per window: the grid
    by arithmetic when the UTC offset is the same at both edges, else wall time by wall
    time through zoneinfo; then one pass against the busy intervals sorted by start.
    No caches, no objects but the output tuples. Same answer as ``expert_slots``
    (tests/domain/test_slots_reference.py holds it)."""
    tz = cal.tz
    lo = max(range_start, now + rules.min_notice * 60)
    hi = min(range_end, now + rules.max_days_ahead * 86_400)
    if lo >= hi:
        return []
    step, dur = rules.interval * 60, rules.duration * 60
    before, after = rules.buffer_before * 60, dur + rules.buffer_after * 60
    day = datetime.fromtimestamp(lo, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(hi - 1, tz).date() + timedelta(days=1)
    starts: list[Instant] = []
    while day <= last:
        windows = cal.overrides[day] if day in cal.overrides else cal.weekly.get(
            day.weekday(), ())
        for sm, em in windows:
            ws, we = _edge(tz, day, sm, 0), _edge(tz, day, em, 1)
            offset_s = (day.toordinal() - 719_163) * 86_400 + sm * 60 - ws
            offset_e = (day.toordinal() - 719_163) * 86_400 + em * 60 - we
            if offset_s == offset_e and ws == _edge(tz, day, sm, 1) \
                    and we == _edge(tz, day, em, 0):
                first = ws if ws >= lo else ws + -((ws - lo) // step) * step
                starts.extend(range(first, min(we - dur, hi - 1) + 1, step))
                continue
            for w in range(sm, em, rules.interval):  # the window crosses a transition
                for fold in (0, 1):
                    s = _edge(tz, day, w, fold)
                    if datetime.fromtimestamp(s, tz).replace(tzinfo=None) != datetime(
                            day.year, day.month, day.day, w // 60, w % 60):
                        continue  # in a gap: this wall time does not exist
                    if ws <= s and s + dur <= we and lo <= s < hi and (
                            fold == 0 or s != _edge(tz, day, w, 0)):
                        starts.append(s)
        day += timedelta(days=1)
    starts = sorted(set(starts))
    busy = sorted(b for b in cal.busy if b[0] < b[1])
    out: list[tuple[Instant, Instant]] = []
    i, n, reach = 0, len(busy), starts[0] - before if starts else 0
    for s in starts:
        while i < n and busy[i][0] < s + after:
            reach = max(reach, busy[i][1])
            i += 1
        if reach <= s - before:
            out.append((s, s + dur))
    return out


def measure(fn: Callable[[], object], runs: int,
            before: Callable[[], object] | None = None) -> tuple[float, float]:
    """(median, p90) in milliseconds of ``fn`` over ``runs`` timed calls."""
    fn()  # warm-up
    gc.collect()
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.9) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description="slot engine benchmark")
    parser.add_argument("--runs", type=int, default=500, help="timed calls per scenario")
    parser.add_argument("--json", metavar="PATH", help="also write the rows here as JSON")
    args = parser.parse_args()
    runs: int = args.runs

    one = calendar(0)
    free = calendar(0, with_busy=False)
    allday = calendar(0, weekly={d: [(0, 1440)] for d in range(7)})
    twenty = [calendar(i) for i in range(20)]

    def one_call() -> list[Slot]:
        return expert_slots(one, RULES, now=NOW, range_start=RANGE_START, range_end=RANGE_END)

    def free_call() -> list[Slot]:
        return expert_slots(free, RULES, now=NOW, range_start=RANGE_START,
                            range_end=RANGE_END)

    def allday_call() -> list[Slot]:
        return expert_slots(allday, RULES, now=NOW, range_start=RANGE_START,
                            range_end=RANGE_END)

    def twenty_call() -> list[Slot]:
        return merged_slots(twenty, RULES, now=NOW, range_start=RANGE_START,
                            range_end=RANGE_END)

    probe = RANGE_START + 9 * 3600

    def offered_call() -> bool:
        return is_offered(one, RULES, now=NOW, start=probe)

    def reference(cals: list[ExpertCalendar]) -> Callable[[], object]:
        def call() -> list[tuple[Instant, str, Instant]]:
            out = [(a, c.expert_id, b) for c in cals for a, b in reference_slots(
                c, RULES, now=NOW, range_start=RANGE_START, range_end=RANGE_END)]
            out.sort()
            return out
        return call

    # (name, call, target ms or None for information only, run before each timing,
    #  the reference sweep of the same calendars or None)
    scenarios: list[tuple[str, Callable[[], object], float | None,
                          Callable[[], object] | None, Callable[[], object] | None]] = [
        ("1 expert, 500 busy", one_call, 1.0, None, reference([one])),
        ("20 experts merged, 500 busy each", twenty_call, 20.0, None, reference(twenty)),
        ("1 expert, 500 busy, cold tz cache", one_call, None, slots._resolve.cache_clear,
         None),
        ("1 expert, no busy (empty month)", free_call, None, None, reference([free])),
        ("1 expert, 00:00-24:00 windows (DST day)", allday_call, None, None,
         reference([allday])),
        ("is_offered, one start", offered_call, None, None, None),
    ]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {runs} timed runs each; "
          f"31 local days {FIRST}..{FIRST + timedelta(days=DAYS - 1)} {TZ.key}, "
          "Mon-Sun 09:00-17:00, 30-minute slots")
    print(f"{'scenario':42} {'slots':>6} {'median ms':>10} {'p90 ms':>8} {'target':>7}  "
          f"{'ref ms':>7} {'ratio':>6} (target <= {REFERENCE_RATIO:g})")
    failed = False
    rows: list[dict[str, object]] = []
    for name, fn, target, before, ref in scenarios:
        result = fn()
        count = str(len(result)) if isinstance(result, list) else str(result)
        median, p90 = measure(fn, runs, before)
        ok = target is None or median <= target
        shown = "-" if target is None else f"<={target:g}"
        verdict = "" if target is None else ("ok" if ok else "MISSED")
        extra = ""
        row: dict[str, object] = {"scenario": name, "slots": count, "median_ms": median,
                                  "p90_ms": p90, "target_ms": target}
        if ref is not None:
            expected = ref()
            assert isinstance(result, list) and expected == [
                (x.start, x.expert_id, x.end) for x in result], f"{name}: differs from reference"
            # Side by side, interleaved, so that load on the machine hits both alike.
            ratios, ref_ms = [], []
            for _ in range(5):
                r_med, _ = measure(ref, max(1, runs // 5))
                e_med, _ = measure(fn, max(1, runs // 5))
                ratios.append(e_med / r_med)
                ref_ms.append(r_med)
            ratio = statistics.median(ratios)
            r_ok = ratio <= REFERENCE_RATIO
            ok = ok and r_ok
            extra = (f"  {statistics.median(ref_ms):7.3f} {ratio:6.2f} "
                     f"{'ok' if r_ok else 'MISSED'}")
            row.update(reference_ms=statistics.median(ref_ms), reference_ratio=ratio,
                       reference_ratio_target=REFERENCE_RATIO)
        failed |= not ok
        print(f"{name:42} {count:>6} {median:10.3f} {p90:8.3f} {shown:>7}  {verdict:6}{extra}")
        row["ok"] = ok
        rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "rows": rows, "ok": not failed}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
