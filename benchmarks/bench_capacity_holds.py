"""Benchmark of holds on one seated session against a real ``consultbook serve``.

Run: ``python benchmarks/bench_capacity_holds.py`` (SQLite: a fresh database file) or
``python benchmarks/bench_capacity_holds.py --postgres URL`` (a fresh database on that
server, dropped at the end). It runs ``consultbook migrate`` and ``consultbook shop
install``, starts ``consultbook serve --workers N`` (``--workers``, default 2), and seeds
through the admin API one 30-minute service with ``--seats`` (50) seats and one expert
working 00:00-24:00 every day.

Each of ``--rounds`` (3) rounds takes a new start: ``--holds`` (200) ``POST /proxy/holds``
of one seat each, every one a different signed ``logged_in_customer_id``, from
``--concurrency`` (20) threads on keep-alive connections. The session's seats are held by
the database (claim_sessions.seats_used, a CHECK constraint), so the target is exact:
``--seats`` answers 201, every other 409 ``slot_unavailable``, no 5xx, and the session's
live seats in the database equal to ``--seats``. Printed per round: holds/s (answers per
second, winners and refusals alike), p50/p99 latency, winners, and the CPU of the load
generator and the server. Exits 1 if a round is not exact.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    Bench,
    CpuMeter,
    cpu_line,
    header,
    hold_request,
    loadavg,
    percentile,
    run_load,
)
from sqlalchemy import create_engine


class SqliteBench(Bench):
    """:class:`Bench` on a fresh SQLite file instead of a PostgreSQL database."""

    def __init__(self) -> None:
        super().__init__()
        self.url = f"sqlite:///{os.path.join(self.tmp, 'bench.db')}"
        self.env["CONSULTBOOK_DATABASE_URL"] = self.url
        self.name = ""  # no PostgreSQL backends to meter

    def __enter__(self) -> SqliteBench:
        self.cli("migrate")
        self.cli("shop", "install", "bench-shop.myshopify.com", "--timezone", "Europe/Berlin")
        self.engine = create_engine(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_server()
        self.engine.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)


def code_of(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def main() -> int:
    p = argparse.ArgumentParser(description="holds on one seated session")
    p.add_argument("--postgres", default=None, help="PostgreSQL server URL (default: SQLite)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--seats", type=int, default=50)
    p.add_argument("--holds", type=int, default=200, help="holds per round, one seat each")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()

    print(header())
    engine_name = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{engine_name}, {args.workers} workers: {args.rounds} rounds of {args.holds} "
          f"one-seat holds on one {args.seats}-seat session, {args.concurrency} concurrent "
          "clients")
    bench: Bench = Bench(args.postgres) if args.postgres else SqliteBench()
    rows: list[dict[str, Any]] = []
    failed = False
    with bench:
        bench.start_server(args.workers)
        service, [expert] = bench.catalog(1)
        bench.admin("PATCH", f"/services/{service}", {"seats": args.seats})
        slots = bench.slots(service, 2)
        customer = 0
        for rnd in range(1, args.rounds + 2):  # the first round warms up, untimed
            slot = slots[rnd * 3]
            reqs = []
            for _ in range(args.holds):
                customer += 1
                reqs.append(hold_request(service, expert, slot["start"], f"c{customer}"))
            assert bench.proc is not None
            meter = CpuMeter(bench.proc.pid, bench.name or None)
            meter.start()
            results, wall = run_load(bench.port, reqs, args.concurrency)
            cpu = meter.stop()
            lat = [r.latency for r in results]
            statuses = Counter(r.status for r in results)
            codes = Counter(code_of(r.body) for r in results if r.status == 409)
            # The session's seats as the database keeps them, and as its claims add up.
            key = f"{expert}|{service}|{int(datetime.fromisoformat(slot['start']).timestamp())}"
            [(kept, seats)] = bench.sql(
                "SELECT (SELECT seats_used FROM claim_sessions WHERE key = :k), "
                "(SELECT COALESCE(SUM(seats), 0) FROM claims WHERE session_key = :k AND "
                "status IN ('held', 'pending', 'confirmed'))", k=key)
            won = statuses.get(201, 0)
            five = sum(v for k, v in statuses.items() if k >= 500 or k == 0)
            ok = (won == args.seats and codes.get("slot_unavailable", 0) == args.holds - won
                  and five == 0 and int(seats) == int(kept or 0) == args.seats)
            label = "warm-up" if rnd == 1 else f"round {rnd - 1}"
            print(f"  {label}: {len(results) / wall:.0f} holds/s, p50 "
                  f"{percentile(lat, 50) * 1e3:.1f} ms, p99 {percentile(lat, 99) * 1e3:.1f} "
                  f"ms, winners {won}, 409 {dict(codes)}, other {dict(statuses)}, live seats "
                  f"{seats}; {cpu_line(cpu)}  {'ok' if ok else 'MISSED'}", flush=True)
            failed |= not ok
            if rnd > 1:
                rows.append({"rate": len(results) / wall, "p50": percentile(lat, 50),
                             "p99": percentile(lat, 99), "won": won, "seats": seats})
            time.sleep(0.5)
        errors = [ln for ln in bench.server_log().splitlines()
                  if "Traceback" in ln or "ERROR" in ln]
        if errors:
            print(f"  server log: {len(errors)} error lines, first: {errors[0][:200]}")
    print()
    print(f"{'round':>5} {'holds/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'winners':>7} "
          f"{'seats':>5}")
    for n, r in enumerate(rows, 1):
        print(f"{n:>5} {r['rate']:8.0f} {r['p50'] * 1e3:7.1f} {r['p99'] * 1e3:7.1f} "
              f"{r['won']:>7} {r['seats']:>5}")
    print(f"target: winners == {args.seats} == live seats, the rest 409 slot_unavailable, "
          f"no 5xx; load average after: {loadavg()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
