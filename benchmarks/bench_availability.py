"""HTTP benchmark of ``GET /proxy/availability`` through the real server on PostgreSQL.

Run by hand (not a test)::

    python3 benchmarks/bench_availability.py \\
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] \\
        [--duration 10] [--connections 20] [--keep-db]

What it does:

1. Creates a fresh PostgreSQL database ``consultbook_bench_<random>`` (dropped at the end),
   migrates it (``consultbook migrate``).
2. Seeds one shop (Europe/Berlin), one 30-minute service (``max_days_ahead`` 120), one
   expert working every day 09:00-17:00, and 300 live confirmed claims (bookings) on
   random free 30-minute slots of the 31 measured days.
3. Starts ``consultbook serve --workers 2`` (gunicorn, as operators run it; no broker, so
   each worker also runs the embedded worker thread) and waits for ``/healthz``.
4. Measures, with ``wrk`` (C, keep-alive; falls back to Python threads with
   ``http.client`` if wrk is missing), on freshly signed App Proxy URLs (several start
   dates, all 31 days long, timestamps signed right before each run):

   * one client, sequential: p50 / p99 latency   (target p50 <= 5 ms)
   * 20 concurrent connections: req/s, p50 / p99 (target >= 1500 req/s, p99 <= 50 ms)
   * ``/healthz`` with 20 connections: req/s (the ceiling of the stack)
   * with ``--history N`` (e.g. 2000000): N past claims are added (1/40 of them the
     measured expert's) and both availability rows are measured again; target p50
     within 1.2x of the run without (the busy query reads the window, not the history:
     index ix_claims_expert_end, migration 0015)

Exits 1 if a target is missed. Load generator and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.clock import SystemClock
from engine.config import Config
from engine.crypto import generate_key
from engine.shopify import sign_proxy

API_KEY = "bench-api-key"
API_SECRET = "shpss_" + "b" * 32
DOMAIN = "bench.myshopify.com"
SHOP_TZ = "Europe/Berlin"
DAYS = 31
CLAIMS = 300
TARGET_P50_MS = 5.0
TARGET_RPS = 1500.0
TARGET_P99_MS = 50.0
TARGET_HISTORY = 1.2  # p50 with --history N past claims / p50 without, at most


# --------------------------------------------------------------------------- setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_database(server_url: str) -> tuple[str, str]:
    server = make_url(server_url)
    name = f"consultbook_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, server.set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    admin = create_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def seed(config: Config, first_day: date) -> dict[str, str]:
    """One shop, one service, one expert 09:00-17:00 daily, CLAIMS confirmed bookings."""
    from engine.bootstrap import bootstrap
    from engine.services.catalog import create_expert, create_service
    from engine.services.claims import insert_last
    from engine.services.schedules import put_schedule
    from engine.services.shops import install_shop
    from engine.store.db import new_id
    from engine.store.models import Claim

    clock = SystemClock()
    ctx = bootstrap(config, clock=clock)
    shop = install_shop(ctx.db, clock, ctx.keyring, DOMAIN, SHOP_TZ, access_token="shpat_x")
    svc = create_service(ctx.db, clock, shop.id, {"title": "Consultation",
                                                  "duration_minutes": 30,
                                                  "max_days_ahead": 120})["id"]
    expert = create_expert(ctx.db, clock, shop.id, {"name": "Ada", "email": "ada@example.com",
                                                    "services": [svc]})["id"]
    every_day = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                   "sun")}
    put_schedule(ctx.db, shop.id, expert, {"weekly": every_day})
    # 300 distinct 30-minute slots out of the 31 x 16 on offer, confirmed bookings.
    tz = ZoneInfo(SHOP_TZ)
    rng = random.Random(7)
    picks = rng.sample([(d, k) for d in range(DAYS) for k in range(16)], CLAIMS)
    now = clock.now()
    with ctx.db.write() as session:
        for d, k in picks:
            day = first_day + timedelta(days=d)
            start = datetime(day.year, day.month, day.day, 9, tzinfo=tz) + timedelta(
                minutes=30 * k)
            start = start.astimezone(UTC)
            end = start + timedelta(minutes=30)
            insert_last(session, Claim(id=new_id("bk"), shop_id=shop.id, service_id=svc,
                              expert_id=expert, start_at=start, end_at=end,
                              claim_start=start, claim_end=end, status="confirmed",
                              order_id=str(rng.randrange(10**12)),
                              line_item_id=str(rng.randrange(10**12)),
                              customer_name="Bench Customer",
                              customer_email="customer@example.com", sequence=0,
                              created_at=now, updated_at=now, confirmed_at=now), now)
    ctx.db.dispose()
    return {"service": svc, "expert": expert}


def add_history(url: str, config: Config, count: int, expert: str) -> None:
    """``count`` confirmed claims in the past, 30 minutes each, one after another back
    from a week ago: ``count // 40`` of ``expert``, the rest of a second expert. Written
    with SQL (generate_series) and the claims triggers off for the load (past claims need
    no sessions, counters or versions for this measurement), then ANALYZE."""
    from engine.bootstrap import bootstrap
    from engine.services.catalog import create_expert

    ctx = bootstrap(config)
    with ctx.db.read() as session:
        shop_id, svc = session.execute(text(
            "SELECT shop_id, service_id FROM claims LIMIT 1")).one()
    other = create_expert(ctx.db, ctx.clock, shop_id, {"name": "History",
                                                       "services": [svc]})["id"]
    ctx.db.dispose()
    mine = count // 40
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        for who, n in ((expert, mine), (other, count - mine)):
            conn.execute(text("""
                INSERT INTO claims (id, shop_id, service_id, expert_id, start_at, end_at,
                    claim_start, claim_end, status, sequence, created_at, updated_at,
                    session_key, seats, reschedules)
                SELECT 'hist' || substr(:who, 5) || '_' || g, :shop, :svc, :who,
                    t, t + interval '30 min', t, t + interval '30 min', 'confirmed', 0,
                    now(), now(), '', 1, 0
                FROM generate_series(1, :n) AS g,
                     LATERAL (SELECT now() - interval '7 days' - g * interval '30 min') AS s(t)
            """), {"who": who, "shop": shop_id, "svc": svc, "n": n})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE claims"))
    engine.dispose()


def signed_paths(service: str, first_day: date, count: int = 8) -> list[str]:
    """Freshly signed availability paths: 31 days from several start dates."""
    now = str(int(time.time()))
    out = []
    for i in range(count):
        params = {"service": service, "start": (first_day + timedelta(days=i % 4)).isoformat(),
                  "days": str(DAYS), "shop": DOMAIN, "path_prefix": "/apps/consult",
                  "timestamp": now}
        params["signature"] = sign_proxy(params, API_SECRET)
        out.append("/proxy/availability?" + urlencode(params))
    return out


def start_server(env: dict[str, str], port: int, workers: int,
                 log: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("consultbook") or ""
    cmd = ([exe] if exe else [sys.executable, "-m", "engine.cli"]) + [
        "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("server did not become healthy in 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------- cpu


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(server_pgid: int, database: str) -> tuple[float, float]:
    """CPU seconds used so far by the server's processes (its process group) and by the
    PostgreSQL backends connected to ``database`` (their process title names it).
    Linux /proc only; (0, 0) elsewhere. Load from other processes does not count."""
    app = pg = 0.0
    proc = Path("/proc")
    if not proc.is_dir():
        return (0.0, 0.0)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
        if int(fields[2]) == server_pgid:
            app += used
        elif cmdline.startswith("postgres:") and f" {database} " in f" {cmdline} ":
            pg += used
    return (app, pg)


# --------------------------------------------------------------------------- load


def check(port: int, path: str) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    if resp.status != 200:
        raise SystemExit(f"GET {path[:60]}... -> {resp.status} {body[:300]!r}")
    return dict(json.loads(body))


_WRK_LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON{\\"requests\\": %%d, \\"seconds\\": %%f, \\"errors\\": %%d, "
    .. "\\"non2xx\\": %%d, \\"p50\\": %%f, \\"p90\\": %%f, \\"p99\\": %%f, \\"mean\\": %%f}\\n",
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000))
end
"""


def run_wrk(port: int, paths: list[str], connections: int, seconds: int,
            workdir: Path) -> dict[str, float]:
    plist = workdir / "paths.txt"
    plist.write_text("\n".join(paths) + "\n")
    script = workdir / "bench.lua"
    script.write_text(_WRK_LUA % plist)
    threads = 1 if connections == 1 else 2
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d",
                          f"{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"JSON(\{.*\})", out)
    if not m:
        raise SystemExit(f"could not read wrk output:\n{out}")
    r = json.loads(m.group(1))
    return {"rps": r["requests"] / r["seconds"], "p50": r["p50"], "p90": r["p90"],
            "p99": r["p99"], "requests": r["requests"], "errors": r["errors"] + r["non2xx"]}


def run_threads(port: int, paths: list[str], connections: int,
                seconds: int) -> dict[str, float]:
    """Fallback load generator: one thread per keep-alive connection."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, i = [], k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            conn.request("GET", paths[i % len(paths)])
            resp = conn.getresponse()
            resp.read()
            mine.append((time.perf_counter() - t0) * 1e3)
            if resp.status != 200:
                errors[0] += 1
            i += 1
        conn.close()
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    lat.sort()
    return {"rps": len(lat) / elapsed, "p50": statistics.median(lat),
            "p90": lat[int(len(lat) * 0.9) - 1], "p99": lat[int(len(lat) * 0.99) - 1],
            "requests": len(lat), "errors": errors[0]}


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description="availability HTTP benchmark")
    parser.add_argument("--postgres",
                        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server URL; a fresh database is created on it")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-client", action="store_true",
                        help="use the Python thread load generator even if wrk is installed")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--json", metavar="PATH", help="also write the rows here as JSON")
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="then add N past confirmed claims (1/40 of them the measured "
                             "expert's, the rest another expert's) and measure again: "
                             f"p50 within {TARGET_HISTORY:g}x of the run without")
    args = parser.parse_args()

    name, url = create_database(args.postgres)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="consultbook-bench-"))
    key = generate_key()
    env = {**os.environ, "CONSULTBOOK_DATABASE_URL": url, "SHOPIFY_API_KEY": API_KEY,
           "SHOPIFY_API_SECRET": API_SECRET, "CONSULTBOOK_ENCRYPTION_KEYS": key,
           "CONSULTBOOK_OUTBOX_DIR": str(workdir / "outbox"),
           # Direct to PostgreSQL, no PgBouncer: prepared statements on, as operators
           # would run it so (docs/operations.md); the caller's environment may say otherwise.
           "CONSULTBOOK_DATABASE_PREPARED_STATEMENTS": os.environ.get(
               "CONSULTBOOK_DATABASE_PREPARED_STATEMENTS", "true")}
    env.pop("CONSULTBOOK_BROKER_URL", None)
    server = None
    try:
        subprocess.run([shutil.which("consultbook") or "consultbook", "migrate"], env=env,
                       check=True, capture_output=True, cwd=workdir)
        config = Config(database_url=url, api_key=API_KEY, api_secret=API_SECRET,
                        encryption_keys=(key,), outbox_dir=str(workdir / "outbox"))
        today = datetime.now(ZoneInfo(SHOP_TZ)).date()
        first_day = today + timedelta(days=1)
        ids = seed(config, first_day)
        server = start_server(env, port, args.workers, workdir / "server.log")

        sample = check(port, signed_paths(ids["service"], first_day, 1)[0])
        slots = len(sample["slots"])
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"{_pg_version(url)}; consultbook serve --workers {args.workers} (prepared "
              f"statements {env['CONSULTBOOK_DATABASE_PREPARED_STATEMENTS']}); "
              f"{DAYS} days, {CLAIMS} confirmed claims, {slots} slots per response "
              f"({len(json.dumps(sample))} bytes)")
        use_wrk = shutil.which("wrk") is not None and not args.threads_client
        print(f"load generator: {'wrk' if use_wrk else 'python threads + http.client'}, "
              f"{args.duration} s per run")

        def load(paths_fn: Any, connections: int) -> dict[str, float]:
            before = cpu_seconds(server.pid, name)
            if use_wrk:
                r = run_wrk(port, paths_fn(), connections, args.duration, workdir)
            else:
                r = run_threads(port, paths_fn(), connections, args.duration)
            after = cpu_seconds(server.pid, name)
            r["app_cpu_ms"] = (after[0] - before[0]) * 1e3 / max(1, r["requests"])
            r["pg_cpu_ms"] = (after[1] - before[1]) * 1e3 / max(1, r["requests"])
            return r

        def avail() -> list[str]:
            return signed_paths(ids["service"], first_day)

        def health() -> list[str]:
            return ["/healthz"]

        load(avail, args.connections)  # warm-up: caches, pools, both workers
        # Background CPU of the idle server (the embedded worker's scans), for reference.
        before = cpu_seconds(server.pid, name)
        time.sleep(5)
        after = cpu_seconds(server.pid, name)
        idle_ms = (after[0] - before[0]) * 1e3 / 5
        rows = [
            ("availability, 1 client", load(avail, 1),
             f"p50 <= {TARGET_P50_MS:g} ms"),
            (f"availability, {args.connections} clients", load(avail, args.connections),
             f">= {TARGET_RPS:g} req/s, p99 <= {TARGET_P99_MS:g} ms"),
            (f"/healthz, {args.connections} clients", load(health, args.connections), "-"),
        ]
        print(f"{'scenario':30} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
              f"{'errors':>6} {'app cpu':>8} {'pg cpu':>7}  target")
        failed = False
        for label, r, target in rows:
            print(f"{label:30} {r['rps']:8.0f} {r['p50']:8.2f} {r['p90']:8.2f} "
                  f"{r['p99']:8.2f} {r['errors']:6.0f} {r['app_cpu_ms']:8.2f} "
                  f"{r['pg_cpu_ms']:7.2f}  {target}")
            failed |= r["errors"] > 0
        print("app cpu / pg cpu: CPU milliseconds per request spent in the server's processes "
              "and in this database's PostgreSQL backends")
        print(f"idle server background: {idle_ms:.1f} ms CPU per second "
              "(included in app cpu above)")
        cores = os.cpu_count() or 1
        for label, r, _ in rows[1:]:
            cost = r["app_cpu_ms"] + r["pg_cpu_ms"]
            if cost > 0:
                print(f"  {label}: CPU-bound ceiling on {cores} idle cores "
                      f"~{cores * 1e3 / cost:.0f} req/s (load generator not counted)")
        one, many, ceiling = rows[0][1], rows[1][1], rows[2][1]
        print(f"availability / healthz throughput: {many['rps'] / ceiling['rps']:.2f}")
        ok = (one["p50"] <= TARGET_P50_MS and many["rps"] >= TARGET_RPS
              and many["p99"] <= TARGET_P99_MS and not failed)
        if args.history > 0:
            t0 = time.perf_counter()
            add_history(url, config, args.history, ids["expert"])
            print(f"history: {args.history} past claims added in "
                  f"{time.perf_counter() - t0:.0f} s ({args.history // 40} of the expert)")
            load(avail, args.connections)  # warm-up again
            for label, r, _ in rows[:2]:
                again = load(avail, 1 if label.endswith("1 client") else args.connections)
                ratio = again["p50"] / r["p50"]
                fine = ratio <= TARGET_HISTORY
                ok = ok and fine
                print(f"{label + ', history':30} {again['rps']:8.0f} {again['p50']:8.2f} "
                      f"{again['p90']:8.2f} {again['p99']:8.2f} {again['errors']:6.0f} "
                      f"p50 {ratio:.2f}x of empty (target <= {TARGET_HISTORY:g}x) "
                      f"{'ok' if fine else 'MISSED'}")
                rows.append((label + ", history", again, f"<= {TARGET_HISTORY:g}x"))
        print("targets: " + ("met" if ok else "MISSED"))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"connections": args.connections, "workers": args.workers,
                           "days": DAYS, "rows": [{"scenario": label, **r}
                                                  for label, r, _ in rows],
                           "ok": ok}, f, indent=2)
        return 0 if ok else 1
    finally:
        if server is not None:
            stop_server(server)
        if not args.keep_db:
            drop_database(args.postgres, name)
        shutil.rmtree(workdir, ignore_errors=True)


def _pg_version(url: str) -> str:
    engine = create_engine(url)
    with engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar())
    engine.dispose()
    return f"PostgreSQL {version.split()[0]}"


if __name__ == "__main__":
    sys.exit(main())
