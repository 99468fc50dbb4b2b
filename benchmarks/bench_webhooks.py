"""Benchmark of webhook ingest against a real ``consultbook serve`` on PostgreSQL.

Run: ``python benchmarks/bench_webhooks.py`` (``--workers 2,3 --repeat 2`` by default;
``--postgres URL`` names the server). For each ``--workers`` value it creates a fresh
database (dropped at the end), migrates it, installs a shop, starts
``consultbook serve --workers N`` and seeds one 30-minute service and ``--experts`` experts
working 00:00-24:00 every day. Before timing, it creates one hold per order through
``POST /proxy/holds``. The timed part sends ``--orders`` signed ``orders/paid`` deliveries,
each twice (same ``X-Shopify-Webhook-Id``, same body: half of all deliveries are
duplicates), shuffled, from ``--concurrency`` (20) threads on keep-alive connections.
Each order has one line item carrying ``{"name": "_hold", "value": <hold id>}``.

Targets: >= 500 deliveries/s, p99 <= 100 ms, every answer 200. Afterwards the database
must hold exactly one booking per order (confirmed), one outbox row per booking and no
refunds. Exits 1 if a target or a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    API_SECRET,
    DEFAULT_SERVER,
    DOMAIN,
    Bench,
    CpuMeter,
    Request,
    cost_ms,
    cpu_line,
    header,
    hold_request,
    loadavg,
    percentile,
    run_load,
)

from engine.shopify import webhook_hmac

TARGET_RATE = 500.0
TARGET_P99 = 0.100


def order_payload(order_id: int, hold: str) -> dict[str, Any]:
    """A paid order with one line item booking ``hold`` (the shape of tests/conftest.py)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    email = f"customer{order_id}@example.com"
    return {
        "id": order_id, "email": email, "financial_status": "paid", "currency": "EUR",
        "updated_at": when, "cancelled_at": None,
        "customer": {"id": order_id, "first_name": "Jon", "last_name": f"Snow {order_id}",
                     "email": email},
        # The variant the benchmark's service sells (_harness.catalog): what was bought
        # is what was held.
        "line_items": [{"id": order_id * 100, "price": "50.00", "quantity": 1,
                        "variant_id": 4242, "product_id": 9100,
                        "properties": [{"name": "_hold", "value": hold},
                                       {"name": "Appointment", "value": "x"}]}],
    }


def delivery(order_id: int, hold: str, webhook_id: str) -> Request:
    body = json.dumps(order_payload(order_id, hold)).encode()
    return Request("POST", "/webhooks", body, {
        "Content-Type": "application/json", "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Shop-Domain": DOMAIN, "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Hmac-Sha256": webhook_hmac(body, API_SECRET)})


def main() -> int:
    p = argparse.ArgumentParser(description="webhook ingest benchmark")
    p.add_argument("--workers", default="2,3", help="comma-separated gunicorn worker counts")
    p.add_argument("--repeat", type=int, default=2, help="timed runs per worker count")
    p.add_argument("--orders", type=int, default=1500,
                   help="distinct orders per run (deliveries = 2 x orders)")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--experts", type=int, default=20)
    p.add_argument("--warmup", type=int, default=100, help="untimed orders before timing")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    p.add_argument("--with-worker", action="store_true",
                   help="keep the embedded worker sending confirmations in the server")
    p.add_argument("--json", metavar="PATH", help="also write the rows here as JSON")
    args = p.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    rng = random.Random(args.seed)

    print(header())
    need = args.warmup + args.repeat * args.orders
    days = min(60, math.ceil(need / (48 * args.experts)) + 1)
    print(f"{args.orders} orders/run x 2 deliveries (half duplicates, shuffled), "
          f"{args.concurrency} concurrent senders; holds created before timing on "
          f"{args.experts} experts x {days} days")

    rows: list[dict[str, Any]] = []
    failed = False
    for workers in worker_counts:
        # Holds outlive the run (an expired hold would still book if free, but keep it simple).
        # Ingest alone: in production the confirmations are sent by Celery workers on other
        # cores; --with-worker keeps the embedded worker sending them in the same processes.
        env = {"CONSULTBOOK_HOLD_TTL_SECONDS": "7200"}
        if not args.with_worker:
            env["CONSULTBOOK_NO_EMBEDDED_WORKER"] = "true"
        with Bench(args.postgres, env) as bench:
            bench.start_server(workers)
            service, _experts = bench.catalog(args.experts)
            slots = bench.slots(service, days)[:need]
            if len(slots) < need:
                raise SystemExit(f"only {len(slots)} slots, need {need}")
            made, _ = run_load(bench.port, [hold_request(service, s["expert"], s["start"],
                                                         f"c{i}")
                                            for i, s in enumerate(slots)], args.concurrency)
            bad = [r for r in made if r.status != 201]
            if bad:
                raise SystemExit(f"creating holds: {len(bad)} non-201, first "
                                 f"{bad[0].status} {bad[0].body[:300]!r}")
            holds = [json.loads(r.body)["hold"] for r in made]
            next_order = 1001

            def batch(n: int) -> list[Request]:
                nonlocal next_order
                reqs = []
                for _ in range(n):
                    order, hold = next_order, holds.pop(0)  # noqa: B023 (this iteration)
                    next_order += 1
                    wid = f"bench-{workers}-{order}"  # noqa: B023
                    reqs += [delivery(order, hold, wid), delivery(order, hold, wid)]
                rng.shuffle(reqs)
                return reqs

            warm, _ = run_load(bench.port, batch(args.warmup), args.concurrency)
            if any(r.status != 200 for r in warm):
                raise SystemExit("warm-up deliveries failed")

            for run in range(1, args.repeat + 1):
                reqs = batch(args.orders)
                time.sleep(2)  # let the embedded worker finish the warm-up's outbox
                load_before = loadavg()
                assert bench.proc is not None
                meter = CpuMeter(bench.proc.pid, bench.name)
                meter.start()
                results, wall = run_load(bench.port, reqs, args.concurrency)
                cpu = meter.stop()
                lat = [r.latency for r in results]
                statuses = Counter(r.status for r in results)
                outcomes = Counter(json.loads(r.body).get("status") for r in results
                                   if r.status == 200)
                rate = len(results) / wall
                ok = (statuses.get(200, 0) == len(reqs) and rate >= TARGET_RATE
                      and percentile(lat, 99) <= TARGET_P99
                      and outcomes.get("processed", 0) == args.orders
                      and outcomes.get("duplicate", 0) == args.orders)
                failed |= not ok
                rows.append({"workers": workers, "run": run, "n": len(results), "wall": wall,
                             "rate": rate, "p50": percentile(lat, 50),
                             "p90": percentile(lat, 90), "p99": percentile(lat, 99),
                             "max": max(lat), "statuses": dict(statuses),
                             "outcomes": dict(outcomes), "cpu": cpu, "load": load_before,
                             "ok": ok})
                print(f"  workers={workers} run={run}: {rate:.0f} deliveries/s, p50 "
                      f"{percentile(lat, 50) * 1e3:.1f} ms, p99 {percentile(lat, 99) * 1e3:.1f}"
                      f" ms, statuses {dict(statuses)}, outcomes {dict(outcomes)}; "
                      f"{cpu_line(cpu)}; load {load_before}", flush=True)

            # The database after every run of this worker count.
            orders = next_order - 1001
            per_order = bench.sql("SELECT order_id, count(*), min(status), max(status) "
                                  "FROM claims WHERE order_id IS NOT NULL GROUP BY order_id")
            per_booking = bench.sql("SELECT c.id, count(o.id) FROM claims c LEFT JOIN outbox o "
                                    "ON o.booking_id = c.id WHERE c.order_id IS NOT NULL "
                                    "GROUP BY c.id")
            refunds = bench.sql("SELECT count(*) FROM refunds")[0][0]
            deliveries = bench.sql("SELECT count(*) FROM webhook_deliveries")[0][0]
            outbox_status = dict(bench.sql("SELECT status, count(*) FROM outbox GROUP BY status"))
            checks = {
                "orders booked": (len(per_order), orders),
                "orders with != 1 booking": (sum(1 for r in per_order if r[1] != 1), 0),
                "bookings not confirmed": (sum(1 for r in per_order
                                               if r[2] != "confirmed" or r[3] != "confirmed"), 0),
                "bookings with != 1 outbox row": (sum(1 for r in per_booking if r[1] != 1), 0),
                "refunds": (refunds, 0),
                "webhook ids recorded": (deliveries, orders),
            }
            print(f"  workers={workers} database: " + ", ".join(
                f"{k} {got} (want {want})" for k, (got, want) in checks.items())
                + f"; outbox by status {outbox_status}")
            if any(got != want for got, want in checks.values()):
                failed = True
                print("  DATABASE CHECK FAILED")
            errors = [ln for ln in bench.server_log().splitlines()
                      if "Traceback" in ln or "ERROR" in ln]
            if errors:
                print(f"  server log: {len(errors)} error lines, first: {errors[0][:200]}")

    print()
    print("webhook ingest, orders/paid, half duplicates, 20 concurrent senders "
          "(target >= 500 deliveries/s, p99 <= 100 ms, all 200)")
    print(f"{'workers':>7} {'run':>3} {'deliv':>6} {'deliv/s':>8} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'200':>5} {'proc':>5} {'dup':>5} {'cli ms':>6} "
          f"{'srv ms':>6} {'pg ms':>6} {'machine':>7} {'est/s':>6} {'load avg before':>16}")
    for r in rows:
        cpu = r["cpu"]
        cli, srv, pg = cost_ms(cpu, r["rate"])
        print(f"{r['workers']:>7} {r['run']:>3} {r['n']:>6} {r['rate']:8.0f} "
              f"{r['p50'] * 1e3:7.1f} {r['p90'] * 1e3:7.1f} {r['p99'] * 1e3:7.1f} "
              f"{r['max'] * 1e3:7.1f} {r['statuses'].get(200, 0):>5} "
              f"{r['outcomes'].get('processed', 0):>5} {r['outcomes'].get('duplicate', 0):>5} "
              f"{cli:6.2f} {srv:6.2f} {pg:6.2f} {cpu['machine']:7.2f} "
              f"{cpu['cores'] * 1e3 / (cli + srv + pg):6.0f} "
              f"{r['load']:>16}  {'ok' if r['ok'] else 'MISSED'}")
    print("cli/srv/pg ms = CPU milliseconds per request of the load generator, gunicorn and "
          "the PostgreSQL backends of the bench database; machine = cores busy (all "
          "processes); est/s = cores x 1000 / (cli + srv + pg), the rate this machine "
          "could sustain with no other load")
    print(f"load average after: {loadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "ok": not failed}, f, indent=2)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
