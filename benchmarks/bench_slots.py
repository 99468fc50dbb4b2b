"""Benchmark of the pure slot engine (engine.domain.slots).

Run: ``python benchmarks/bench_slots.py`` (``--runs N`` to change the count). Scenarios use
fixed data: 31 days of Mon-Sun 09:00-17:00 in Europe/Berlin (the range crosses the
2026-03-29 spring-forward date, which stays on the fast path because the transition is
outside the working window), 30-minute slots, 500 busy intervals drawn with a seeded
random generator. Targets (median): one expert <= 1 ms; twenty experts merged <= 20 ms.
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

    # (name, call, target ms or None for information only, run before each timing)
    scenarios: list[tuple[str, Callable[[], object], float | None,
                          Callable[[], object] | None]] = [
        ("1 expert, 500 busy", one_call, 1.0, None),
        ("20 experts merged, 500 busy each", twenty_call, 20.0, None),
        ("1 expert, 500 busy, cold tz cache", one_call, None, slots._resolve.cache_clear),
        ("1 expert, no busy", free_call, None, None),
        ("1 expert, 00:00-24:00 windows (DST day)", allday_call, None, None),
        ("is_offered, one start", offered_call, None, None),
    ]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {runs} timed runs each; "
          f"31 local days {FIRST}..{FIRST + timedelta(days=DAYS - 1)} {TZ.key}, "
          "Mon-Sun 09:00-17:00, 30-minute slots")
    print(f"{'scenario':42} {'slots':>6} {'median ms':>10} {'p90 ms':>8} {'target':>7}")
    failed = False
    rows: list[dict[str, object]] = []
    for name, fn, target, before in scenarios:
        result = fn()
        count = str(len(result)) if isinstance(result, list) else str(result)
        median, p90 = measure(fn, runs, before)
        ok = target is None or median <= target
        failed |= not ok
        shown = "-" if target is None else f"<={target:g}"
        verdict = "" if target is None else ("ok" if ok else "MISSED")
        print(f"{name:42} {count:>6} {median:10.3f} {p90:8.3f} {shown:>7}  {verdict}")
        rows.append({"scenario": name, "slots": count, "median_ms": median, "p90_ms": p90,
                     "target_ms": target, "ok": ok})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "rows": rows, "ok": not failed}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
