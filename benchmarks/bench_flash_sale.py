"""Flash sale: many customers at once on one expert's few open slots.

Run: ``python benchmarks/bench_flash_sale.py`` (``--customers 500 --slots 10`` by default;
``--postgres URL`` names the PostgreSQL server, default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; ``--redis URL`` the Redis,
default ``redis://127.0.0.1:6379/6``; ``--json PATH`` also writes the figures as JSON).

The production topology: a fresh database of its own (``consultbook migrate``,
``consultbook shop install``; dropped at the end), ``consultbook serve --workers 2``
(gunicorn) with Redis as broker and cache (``CONSULTBOOK_BROKER_URL`` and
``CONSULTBOOK_REDIS_URL``; no embedded worker). One 30-minute service and one expert
whose only hours are ``--slots`` half-hours on one day two days ahead.

Then ``--customers`` threads are released at once by a barrier, each a different
storefront visitor (its own signed ``logged_in_customer_id`` and its own client address
in ``X-Forwarded-For``, on its own keep-alive connection opened at the release), and each
does what the booking page does in a browser: ``GET /proxy/availability`` for that day,
picks one of the offered slots at random and ``POST /proxy/holds`` it. On ``409`` it
waits a small jittered backoff, fetches availability again and tries another offered
slot, up to ``--attempts`` holds; it gives up when nothing is offered.

Targets: exactly ``--slots`` holds won (201), exactly that many live claims in the
database afterwards (one per slot), no 5xx (nor dropped connections), p99 of every
answer (availability and holds alike) <= 1 s. Prints answers by status, the latency of
every answer, what the customers ended with, and the wall time. Exits 1 if a target is
missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DEFAULT_SERVER,
    Bench,
    CpuMeter,
    cpu_line,
    header,
    hold_request,
    loadavg,
    percentile,
    proxy_query,
)

TARGET_P99 = 1.0  # seconds, every answer
DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
SHOP_TZ = ZoneInfo("Europe/Berlin")
DROPPED = 0  # no answer: the connection failed or was reset


@dataclass
class Answer:
    kind: str  # "availability" | "hold"
    status: int
    latency: float  # seconds, from send (connect included) to the whole answer read
    code: str = ""  # error.code of a 4xx


@dataclass
class Customer:
    index: int
    answers: list[Answer] = field(default_factory=list)
    won: str | None = None  # the start of the slot held
    outcome: str = ""


def visitor_address(i: int) -> str:
    """A distinct client address per customer (what Shopify appends to X-Forwarded-For)."""
    return f"10.{64 + i // 65536 % 64}.{i // 256 % 256}.{i % 256}"


def error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


class Browser:
    """One customer's keep-alive connection; reconnects after a dropped connection."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: bytes | None,
             headers: dict[str, str]) -> tuple[int, bytes, float]:
        t0 = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            status, raw = resp.status, resp.read()
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            status, raw = DROPPED, repr(exc).encode()
        return status, raw, time.perf_counter() - t0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def shop(customer: Customer, port: int, service: str, expert: str, day: str, attempts: int,
         backoff: float, timeout: float, gate: threading.Barrier, seed: int) -> None:
    rng = random.Random(seed)
    name = f"flash-{customer.index}"
    addr = visitor_address(customer.index)
    browser = Browser(port, timeout)
    gate.wait()
    tried = 0
    try:
        while True:
            path = "/proxy/availability?" + proxy_query(
                {"service": service, "start": day, "days": "1", "expert": expert},
                logged_in_customer_id=name)
            status, raw, lat = browser.call("GET", path, None, {"X-Forwarded-For": addr})
            customer.answers.append(Answer("availability", status, lat, error_code(raw)
                                           if 400 <= status < 500 else ""))
            if status != 200:
                tried += 1  # an unusable page counts against the customer's patience
                if tried >= attempts:
                    customer.outcome = f"gave up (availability {status})"
                    return
                time.sleep(backoff * tried * rng.uniform(0.5, 1.5))
                continue
            offered = [s["start"] for s in json.loads(raw)["slots"] if s["expert"] == expert]
            if not offered:
                customer.outcome = "nothing offered"
                return
            start = rng.choice(offered)
            req = hold_request(service, expert, start, name)
            req.headers["X-Forwarded-For"] = addr
            status, raw, lat = browser.call(req.method, req.path, req.body, req.headers)
            customer.answers.append(Answer("hold", status, lat, error_code(raw)
                                           if 400 <= status < 500 else ""))
            if status == 201:
                customer.won = start
                customer.outcome = "won a hold"
                return
            tried += 1
            if tried >= attempts:
                customer.outcome = f"gave up after {tried} refused holds"
                return
            time.sleep(backoff * tried * rng.uniform(0.5, 1.5))
    finally:
        browser.close()


def setup(bench: Bench, slots: int) -> tuple[str, str, str, list[str]]:
    """One 30-minute service and one expert open only ``slots`` half-hours, from 10:00 on
    the day two days ahead (shop time). Returns (service, expert, day, offered starts)."""
    svc = bench.admin("POST", "/services", {"title": "Flash consultation",
                                            "duration_minutes": 30, "variant_id": 4243})
    expert = bench.admin("POST", "/experts", {"name": "Popular Expert",
                                              "email": "popular@example.com",
                                              "services": [svc["id"]]})
    day = (datetime.now(UTC).astimezone(SHOP_TZ) + timedelta(days=2)).date()
    end = 10 * 60 + 30 * slots
    if end > 24 * 60:
        raise SystemExit(f"--slots {slots}: more half-hours than fit after 10:00")
    until = "24:00" if end == 24 * 60 else f"{end // 60:02d}:{end % 60:02d}"
    bench.admin("PUT", f"/experts/{expert['id']}/schedule", {
        "weekly": {}, "overrides": [{"date": day.isoformat(), "windows": [["10:00", until]]}]})
    status, doc = bench.request("GET", "/proxy/availability?" + proxy_query(
        {"service": svc["id"], "start": day.isoformat(), "days": "1",
         "expert": expert["id"]}))
    if status != 200:
        raise SystemExit(f"availability before the sale -> {status} {doc}")
    offered = [s["start"] for s in doc["slots"]]
    if len(offered) != slots:
        raise SystemExit(f"{len(offered)} slots offered before the sale, expected {slots}")
    return svc["id"], expert["id"], day.isoformat(), offered


def main() -> int:
    p = argparse.ArgumentParser(description="flash-sale benchmark")
    p.add_argument("--customers", type=int, default=500)
    p.add_argument("--slots", type=int, default=10)
    p.add_argument("--attempts", type=int, default=5,
                   help="refused holds (409 or other) before a customer gives up")
    p.add_argument("--backoff", type=float, default=0.05,
                   help="seconds; the n-th retry waits n x this x uniform(0.5, 1.5)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--timeout", type=float, default=30.0, help="client socket timeout, s")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    p.add_argument("--redis", default=DEFAULT_REDIS,
                   help="broker and cache; 'none' for the embedded worker and no Redis")
    p.add_argument("--json", metavar="PATH", help="also write the figures here as JSON")
    args = p.parse_args()

    print(header())
    env = {"CONSULTBOOK_NO_EMBEDDED_WORKER": "true"}
    if args.redis != "none":
        env.update(CONSULTBOOK_BROKER_URL=args.redis, CONSULTBOOK_REDIS_URL=args.redis)
    print(f"{args.customers} customers, each a different visitor, at once on one expert's "
          f"{args.slots} open slots; up to {args.attempts} refused holds each, backoff "
          f"{args.backoff * 1e3:.0f} ms x n x U(0.5, 1.5); serve --workers {args.workers}, "
          f"PostgreSQL, Redis {args.redis}")

    with Bench(args.postgres, env) as bench:
        bench.start_server(args.workers)
        service, expert, day, offered = setup(bench, args.slots)
        customers = [Customer(i) for i in range(args.customers)]
        gate = threading.Barrier(args.customers + 1)
        threads = [threading.Thread(
            target=shop, args=(c, bench.port, service, expert, day, args.attempts,
                               args.backoff, args.timeout, gate, args.seed * 100003 + c.index),
            daemon=True) for c in customers]
        for t in threads:
            t.start()
        load_before = loadavg()
        assert bench.proc is not None
        meter = CpuMeter(bench.proc.pid, bench.name)
        meter.start()
        gate.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        cpu = meter.stop()

        live = bench.sql(
            "SELECT start_at, count(*) FROM claims WHERE expert_id = :e "
            "AND status IN ('held', 'pending', 'confirmed') GROUP BY start_at", e=expert)
        status, doc = bench.request("GET", "/proxy/availability?" + proxy_query(
            {"service": service, "start": day, "days": "1", "expert": expert}))
        offered_after = len(doc["slots"]) if status == 200 else -1
        errors = [ln for ln in bench.server_log().splitlines()
                  if "Traceback" in ln or " ERROR " in ln or '"level": "error"' in ln]

    answers = [a for c in customers for a in c.answers]
    lat = [a.latency for a in answers]
    by_status = Counter((a.kind, a.status, a.code) for a in answers)
    won = [c.won for c in customers if c.won is not None]
    five = sum(1 for a in answers if a.status >= 500)
    dropped = sum(1 for a in answers if a.status == DROPPED)
    live_claims = sum(n for _, n in live)
    per_slot_ok = len(live) == args.slots and all(n == 1 for _, n in live)
    p99 = percentile(lat, 99)
    checks = {
        "holds won": (len(won), args.slots, len(won) == args.slots),
        "distinct slots won": (len(set(won)), args.slots,
                               set(won) == set(offered)),
        "live claims after": (live_claims, args.slots, live_claims == args.slots
                              and per_slot_ok),
        "5xx answers": (five, 0, five == 0),
        "dropped connections": (dropped, 0, dropped == 0),
        "p99 of every answer, s": (round(p99, 3), TARGET_P99, p99 <= TARGET_P99),
        "slots offered after": (offered_after, 0, offered_after == 0),
    }

    print()
    print(f"wall time {wall:.2f} s for {len(answers)} answers "
          f"({len(answers) / wall:.0f} answers/s); load average before {load_before}")
    print("answers by status:")
    for (kind, st, code), n in sorted(by_status.items()):
        print(f"  {kind:<12} {st if st else 'dropped':>7} {code:<18} {n:>6}")
    for kind in ("availability", "hold", "all"):
        ls = [a.latency for a in answers if kind in ("all", a.kind)]
        if ls:
            print(f"latency {kind:<12} n={len(ls):>5}  p50 {percentile(ls, 50) * 1e3:7.1f} ms"
                  f"  p99 {percentile(ls, 99) * 1e3:7.1f} ms  max {max(ls) * 1e3:7.1f} ms")
    outcomes = Counter(c.outcome for c in customers)
    print("customers: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    per_customer = Counter(sum(1 for a in c.answers if a.kind == "hold") for c in customers)
    print("hold attempts per customer: " + ", ".join(
        f"{k}: {v}" for k, v in sorted(per_customer.items())))
    print(cpu_line(cpu))
    if errors:
        print(f"server log: {len(errors)} error lines, first: {errors[0][:300]}")
    print()
    print(f"{'check':<26} {'measured':>10} {'target':>8}  met")
    for name, (got, want, ok) in checks.items():
        print(f"{name:<26} {got!s:>10} {want!s:>8}  {'yes' if ok else 'NO'}")
    print(f"load average after: {loadavg()}")

    failed = not all(ok for _, _, ok in checks.values())
    if args.json:
        report: dict[str, Any] = {
            "customers": args.customers, "slots": args.slots, "workers": args.workers,
            "redis": args.redis, "wall_s": wall, "answers": len(answers),
            "holds_won": len(won), "distinct_slots_won": len(set(won)),
            "live_claims": live_claims, "live_claims_one_per_slot": per_slot_ok,
            "five_xx": five, "dropped": dropped, "offered_after": offered_after,
            "p50_s": percentile(lat, 50), "p99_s": p99, "max_s": max(lat) if lat else None,
            "by_status": {f"{k} {s} {c}".strip(): n for (k, s, c), n in by_status.items()},
            "outcomes": dict(outcomes), "cpu": cpu, "load_before": load_before,
            "load_after": loadavg(), "server_error_lines": len(errors),
            "checks": {k: {"measured": g, "target": w, "met": ok}
                       for k, (g, w, ok) in checks.items()},
            "ok": not failed,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
