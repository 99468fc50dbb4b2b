"""Benchmark of storefront holds against a real ``consultbook serve`` on PostgreSQL.

Run: ``python benchmarks/bench_holds.py`` (``--workers 2,3 --repeat 2`` by default;
``--postgres URL`` names the server, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``). For each ``--workers`` value it
creates a fresh database (dropped at the end), runs ``consultbook migrate`` and
``consultbook shop install``, starts ``consultbook serve --workers N``, and seeds through
the admin API one 30-minute service and ``--experts`` experts working 00:00-24:00 every
day. Then:

* (a) distinct slots: ``--holds`` ``POST /proxy/holds`` on distinct slots from
  ``--concurrency`` (20) threads, each on a keep-alive connection, every request a
  different signed ``logged_in_customer_id``. Target >= 600 holds/s, every answer 201.
* (b) one slot: ``--contenders`` (200) threads, each with an open connection, released at
  once by a barrier onto the same slot (``--rounds`` times, a new slot each round).
  Target: exactly one 201, every other answer 409 ``slot_unavailable``, no 5xx, every
  answer within 2 s of the release.

The load generator runs on the same machine: its CPU, gunicorn's and the whole machine's
are printed per run so a client-bound run can be recognised. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DEFAULT_SERVER,
    Bench,
    CpuMeter,
    Request,
    cost_ms,
    cpu_line,
    header,
    hold_request,
    loadavg,
    percentile,
    run_burst,
    run_load,
)

TARGET_RATE = 600.0
TARGET_BURST_MAX = 2.0


def code_of(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def main() -> int:
    p = argparse.ArgumentParser(description="holds benchmark")
    p.add_argument("--workers", default="2,3", help="comma-separated gunicorn worker counts")
    p.add_argument("--repeat", type=int, default=2, help="timed runs of (a) and (b) per count")
    p.add_argument("--holds", type=int, default=3000, help="holds per distinct-slot run")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--contenders", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3, help="one-slot bursts per run")
    p.add_argument("--experts", type=int, default=20)
    p.add_argument("--warmup", type=int, default=200, help="untimed holds before timing")
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    p.add_argument("--json", metavar="PATH", help="also write the rows here as JSON")
    args = p.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]

    print(header())
    need = args.warmup + args.repeat * (args.holds + args.rounds)
    days = min(60, math.ceil(need / (48 * args.experts)) + 1)
    print(f"(a) {args.holds} holds on distinct slots, {args.concurrency} concurrent clients; "
          f"(b) {args.contenders} clients on one slot x {args.rounds} rounds; "
          f"{args.experts} experts x {days} days of 00:00-24:00, 30-minute service")

    rows_a: list[dict[str, Any]] = []
    rows_b: list[dict[str, Any]] = []
    failed = False
    for workers in worker_counts:
        with Bench(args.postgres) as bench:
            bench.start_server(workers)
            service, _experts = bench.catalog(args.experts)
            slots = bench.slots(service, days)
            if len(slots) < need:
                raise SystemExit(f"only {len(slots)} slots, need {need}")
            cursor = 0
            customer = 0

            def take(n: int) -> list[dict[str, str]]:
                nonlocal cursor
                out = slots[cursor:cursor + n]  # noqa: B023 (used in this iteration only)
                cursor += n
                return out

            def requests_for(chosen: list[dict[str, str]]) -> list[Request]:
                nonlocal customer
                out = []
                for s in chosen:
                    customer += 1
                    out.append(hold_request(service, s["expert"], s["start"],  # noqa: B023
                                            f"c{customer}"))
                return out

            warm, _ = run_load(bench.port, requests_for(take(args.warmup)), args.concurrency)
            bad = [r for r in warm if r.status != 201]
            if bad:
                raise SystemExit(f"warm-up: {len(bad)} non-201, first: {bad[0].status} "
                                 f"{bad[0].body[:300]!r}")

            for run in range(1, args.repeat + 1):
                # (a) distinct slots
                reqs = requests_for(take(args.holds))
                load_before = loadavg()
                assert bench.proc is not None
                meter = CpuMeter(bench.proc.pid, bench.name)
                meter.start()
                results, wall = run_load(bench.port, reqs, args.concurrency)
                cpu = meter.stop()
                lat = [r.latency for r in results]
                statuses = Counter(r.status for r in results)
                rate = len(results) / wall
                ok = statuses.get(201, 0) == len(reqs) and rate >= TARGET_RATE
                failed |= not ok
                rows_a.append({"workers": workers, "run": run, "n": len(results),
                               "wall": wall, "rate": rate, "p50": percentile(lat, 50),
                               "p90": percentile(lat, 90), "p99": percentile(lat, 99),
                               "max": max(lat), "statuses": dict(statuses), "cpu": cpu,
                               "load": load_before, "ok": ok})
                print(f"  workers={workers} run={run} (a): {rate:.0f} holds/s, "
                      f"p50 {percentile(lat, 50) * 1e3:.1f} ms, p99 "
                      f"{percentile(lat, 99) * 1e3:.1f} ms, statuses {dict(statuses)}; "
                      f"{cpu_line(cpu)}; load {load_before}", flush=True)
                if statuses.get(201, 0) != len(reqs):
                    sample = next(r for r in results if r.status != 201)
                    print(f"    first non-201: {sample.status} {sample.body[:300]!r}")

                # (b) one slot, many clients at once
                for rnd in range(1, args.rounds + 1):
                    slot = take(1)[0]
                    reqs = []
                    for _ in range(args.contenders):
                        customer += 1
                        reqs.append(hold_request(service, slot["expert"], slot["start"],
                                                 f"c{customer}"))
                    meter.start()
                    results, wall = run_burst(bench.port, reqs)
                    cpu = meter.stop()
                    lat = [r.latency for r in results]
                    statuses = Counter(r.status for r in results)
                    codes = Counter(code_of(r.body) for r in results if r.status == 409)
                    live = bench.sql(
                        "SELECT count(*) FROM claims WHERE expert_id = :e "
                        "AND start_at = CAST(:s AS timestamptz) "
                        "AND status IN ('held', 'pending', 'confirmed')",
                        e=slot["expert"], s=slot["start"].replace("Z", "+00:00"))[0][0]
                    five = sum(v for k, v in statuses.items() if k >= 500 or k == 0)
                    ok = (statuses.get(201, 0) == 1
                          and codes.get("slot_unavailable", 0) == args.contenders - 1
                          and five == 0 and max(lat) <= TARGET_BURST_MAX and live == 1)
                    failed |= not ok
                    rows_b.append({"workers": workers, "run": run, "round": rnd,
                                   "won": statuses.get(201, 0),
                                   "lost": codes.get("slot_unavailable", 0),
                                   "other": len(results) - statuses.get(201, 0)
                                   - codes.get("slot_unavailable", 0),
                                   "five": five, "p50": percentile(lat, 50), "max": max(lat),
                                   "wall": wall, "live": live, "ok": ok})
                    print(f"  workers={workers} run={run} (b) round {rnd}: "
                          f"statuses {dict(statuses)}, 409 codes {dict(codes)}, "
                          f"max {max(lat) * 1e3:.0f} ms, live claims on the slot {live}",
                          flush=True)
                time.sleep(1)
            errors = [ln for ln in bench.server_log().splitlines()
                      if "Traceback" in ln or "ERROR" in ln]
            if errors:
                print(f"  server log: {len(errors)} error lines, first: {errors[0][:200]}")

    print()
    print("(a) holds on distinct slots, 20 concurrent clients (target >= 600 holds/s, all 201)")
    print(f"{'workers':>7} {'run':>3} {'holds':>6} {'holds/s':>8} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'201':>5} {'cli ms':>6} {'srv ms':>6} "
          f"{'pg ms':>6} {'machine':>7} {'est/s':>6} {'load avg before':>16}")
    for r in rows_a:
        cpu = r["cpu"]
        cli, srv, pg = cost_ms(cpu, r["rate"])
        print(f"{r['workers']:>7} {r['run']:>3} {r['n']:>6} {r['rate']:8.0f} "
              f"{r['p50'] * 1e3:7.1f} {r['p90'] * 1e3:7.1f} {r['p99'] * 1e3:7.1f} "
              f"{r['max'] * 1e3:7.1f} {r['statuses'].get(201, 0):>5} "
              f"{cli:6.2f} {srv:6.2f} {pg:6.2f} {cpu['machine']:7.2f} "
              f"{cpu['cores'] * 1e3 / (cli + srv + pg):6.0f} "
              f"{r['load']:>16}  {'ok' if r['ok'] else 'MISSED'}")
    print()
    print(f"(b) {args.contenders} clients on one slot at once (target: one 201, the rest 409 "
          "slot_unavailable, no 5xx, max <= 2000 ms)")
    print(f"{'workers':>7} {'run':>3} {'round':>5} {'201':>4} {'409':>4} {'other':>5} "
          f"{'5xx':>4} {'p50 ms':>7} {'max ms':>7} {'live':>4}")
    for r in rows_b:
        print(f"{r['workers']:>7} {r['run']:>3} {r['round']:>5} {r['won']:>4} {r['lost']:>4} "
              f"{r['other']:>5} {r['five']:>4} {r['p50'] * 1e3:7.0f} "
              f"{r['max'] * 1e3:7.0f} {r['live']:>4}  "
              f"{'ok' if r['ok'] else 'MISSED'}")
    print("cli/srv/pg ms = CPU milliseconds per request of the load generator, gunicorn and "
          "the PostgreSQL backends of the bench database; machine = cores busy (all "
          "processes); est/s = cores x 1000 / (cli + srv + pg), the rate this machine "
          "could sustain with no other load")
    print(f"load average after: {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"distinct": rows_a, "one_slot": rows_b, "ok": not failed}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
