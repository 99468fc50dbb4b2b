"""HTTP benchmark of ``GET /proxy/availability?expert=any`` for a month, with limits
through the real server on PostgreSQL.

Run by hand (not a test)::

    python3 benchmarks/bench_capacity_availability.py \\
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] \\
        [--experts 20] [--seats 1] [--workers 2] [--requests 4000] [--single 500]

What it does:

1. A fresh database with one shop (:class:`_harness.Bench`), one 30-minute service with
   ``limits`` ``{"day": 3, "week": 10}`` (``--seats`` > 1 makes it a group service),
   ``--experts`` experts offering it, each working every day 09:00-17:00 (Berlin).
2. Books through ``POST /proxy/holds`` (hold lifetime one hour, so nothing expires
   during the run): for every expert three holds on each of five random days of the
   month (so those days reach the day limit), and for a quarter of the experts four
   days of one ISO week (the week limit then refuses what goes beyond ten: answered
   ``409 limit_reached``, as it should be).
3. Measures ``GET /proxy/availability?service=…&start=…&days=31&expert=any`` on freshly
   signed URLs (eight start dates) -- one client sequentially, then ``--concurrency``
   (20) keep-alive clients -- and, for comparison, the same with the limits removed
   (the common path: one query, no counters).

Prints req/s, p50/p90/p99 and the server's and PostgreSQL's CPU per request, and the
first traceback of the server's log if there is one. Exits 1 on any non-200 answer.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DEFAULT_SERVER,
    Bench,
    CpuMeter,
    Request,
    cost_ms,
    header,
    hold_request,
    percentile,
    proxy_query,
    run_load,
)
from sqlalchemy import text

DAYS = 31
SHOP_TZ = ZoneInfo("Europe/Berlin")
LIMITS = {"day": 3, "week": 10}
CHUNK = 500


def setup(bench: Bench, experts: int, seats: int) -> tuple[str, list[str]]:
    svc = bench.admin("POST", "/services", {"title": "Consultation", "duration_minutes": 30,
                                            "max_days_ahead": 90, "variant_id": 4242})["id"]
    weekly = {d: [["09:00", "17:00"]]
              for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    ids = []
    for n in range(experts):
        e = bench.admin("POST", "/experts", {"name": f"Expert {n}",
                                             "email": f"expert{n}@example.com",
                                             "services": [svc]})["id"]
        bench.admin("PUT", f"/experts/{e}/schedule", {"weekly": weekly, "overrides": []})
        ids.append(e)
    set_limits(bench, svc, LIMITS, seats)
    return svc, ids


def set_limits(bench: Bench, service: str, limits: dict[str, int] | None, seats: int) -> None:
    """Straight into the row (the admin API validates the same fields; this keeps the
    benchmark independent of it). Servers read it within a second (the read cache)."""
    with bench.engine.begin() as conn:
        conn.execute(text("UPDATE services SET limits = CAST(:l AS json), seats = :s "
                          "WHERE id = :id"),
                     {"l": json.dumps(limits) if limits else None, "s": seats, "id": service})
    time.sleep(1.5)


def book(bench: Bench, service: str, experts: list[str], first_day: date) -> dict[int, int]:
    """The holds of step 2; returns {status: count}."""
    rng = random.Random(11)
    requests: list[Request] = []
    n = 0
    for k, expert in enumerate(experts):
        days = rng.sample(range(1, DAYS), 5)
        if k % 4 == 0:  # four days of one ISO week: 12 sessions asked, 10 allowed
            monday = next(d for d in range(1, DAYS)
                          if (first_day + timedelta(days=d)).weekday() == 0)
            days = [monday + i for i in range(4)]
        for d in days:
            day = first_day + timedelta(days=d)
            for hour in rng.sample(range(16), 3):
                start = datetime(day.year, day.month, day.day, 9, tzinfo=SHOP_TZ) + timedelta(
                    minutes=30 * hour)
                n += 1
                requests.append(hold_request(service, expert, start.astimezone(
                    ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ"), f"bench-{n}"))
    results, _ = run_load(bench.port, requests, 4)
    statuses: dict[int, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.status not in (201, 409):
            raise SystemExit(f"hold -> {r.status} {r.body[:300]!r}")
    return statuses


def paths(service: str, first_day: date, count: int) -> list[Request]:
    """``count`` requests over eight start dates, signed now (max age 300 s)."""
    signed = [("/proxy/availability?" + proxy_query({
        "service": service, "start": (first_day + timedelta(days=i)).isoformat(),
        "days": str(DAYS), "expert": "any"})) for i in range(8)]
    return [Request("GET", signed[i % len(signed)]) for i in range(count)]


def measure(bench: Bench, service: str, first_day: date, count: int,
            concurrency: int) -> dict[str, Any]:
    assert bench.proc is not None
    meter = CpuMeter(bench.proc.pid, bench.name)
    meter.start()
    results: list[Any] = []
    wall = 0.0
    # In chunks, each signed just before it is sent: a signature lives 300 s, and a
    # loaded machine may need longer than that for a whole run.
    for chunk in range(0, count, CHUNK):
        done, seconds = run_load(bench.port, paths(service, first_day,
                                                   min(CHUNK, count - chunk)), concurrency)
        results.extend(done)
        wall += seconds
    cpu = meter.stop()
    bad = [r for r in results if r.status != 200]
    if bad:
        raise SystemExit(f"availability -> {bad[0].status} {bad[0].body[:300]!r}")
    lat = [r.latency * 1e3 for r in results]
    rate = len(results) / wall
    _cli, srv, pg = cost_ms(cpu, rate)
    return {"rate": rate, "p50": percentile(lat, 50), "p90": percentile(lat, 90),
            "p99": percentile(lat, 99), "srv": srv, "pg": pg, "n": len(results)}


def main() -> int:
    p = argparse.ArgumentParser(description="availability with limits, expert=any")
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    p.add_argument("--experts", type=int, default=20)
    p.add_argument("--seats", type=int, default=1, help="the service's seats (1 = 1:1)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--requests", type=int, default=4000, help="requests of a concurrent run")
    p.add_argument("--single", type=int, default=500, help="requests of the 1-client run")
    args = p.parse_args()
    print(header())
    with Bench(args.postgres, {"CONSULTBOOK_HOLD_TTL_SECONDS": "3600"}) as bench:
        bench.start_server(args.workers)
        service, experts = setup(bench, args.experts, args.seats)
        first_day = datetime.now(SHOP_TZ).date() + timedelta(days=1)
        statuses = book(bench, service, experts, first_day)
        live = bench.sql("SELECT count(*) FROM claims WHERE status = 'held'")[0][0]
        full = bench.sql("SELECT count(*) FROM capacity_counters WHERE cap IS NOT NULL "
                         "AND used >= cap")[0][0]
        sample = bench.request("GET", paths(service, first_day, 1)[0].path)[1]
        print(f"{args.experts} experts x {DAYS} days 09:00-17:00, 30-minute service, seats "
              f"{args.seats}, limits {LIMITS}; holds {statuses} ({live} live), {full} "
              f"counters at their cap; expert=any month: {len(sample['slots'])} starts, "
              f"{len(json.dumps(sample))} bytes; consultbook serve --workers {args.workers}")
        rows = []
        for label, limits in (("limits", LIMITS), ("no limits", None)):
            set_limits(bench, service, limits, args.seats)
            measure(bench, service, first_day, 200, args.concurrency)  # warm-up
            rows.append((label, 1, measure(bench, service, first_day, args.single, 1)))
            rows.append((label, args.concurrency, measure(bench, service, first_day,
                                                          args.requests, args.concurrency)))
        print(f"{'scenario':12} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} "
              f"{'p90 ms':>7} {'p99 ms':>7} {'srv cpu':>7} {'pg cpu':>6}")
        for label, clients, r in rows:
            print(f"{label:12} {clients:>7} {r['n']:>8} {r['rate']:7.0f} {r['p50']:7.2f} "
                  f"{r['p90']:7.2f} {r['p99']:7.2f} {r['srv']:7.2f} {r['pg']:6.2f}")
        print("srv cpu / pg cpu: CPU milliseconds per request of the server's processes and "
              "of this database's PostgreSQL backends")
        errors = [ln for ln in bench.server_log().splitlines()
                  if "Traceback" in ln or " ERROR " in ln]
        if errors:
            # Shown, not fatal: every answer was checked above (a 200 each).
            log = bench.server_log()
            at = log.index("Traceback") if "Traceback" in log else 0
            print(f"server log: {len(errors)} error lines, first:\n{log[at:at + 1500]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
