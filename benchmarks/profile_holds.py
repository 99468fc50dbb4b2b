"""Where a hold's time goes, in-process: ``POST /proxy/holds`` on distinct slots
through falcon's TestClient against a fresh PostgreSQL database (dropped at the end).

Run: ``python benchmarks/profile_holds.py`` (``--holds 2000``; ``--refused`` measures
refused holds (409) instead: every slot is held once first, unmeasured, and then held
again by another visitor, as in a flash sale; ``--profile N``
prints cProfile's top N functions by cumulative time; ``--postgres URL`` names the server).

Prints, per hold: the statements sent (all of them, and those of the write transaction),
this process's CPU (the app: falcon, SQLAlchemy, psycopg, our code) and the CPU of the
PostgreSQL backend serving it -- CPU, not throughput, so a machine shared with other work
still gives comparable figures. No HTTP server and no load generator: what gunicorn adds
on top of this is its own request handling.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import falcon.testing
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from engine.bootstrap import bootstrap
from engine.config import Config
from engine.crypto import generate_key
from engine.services.shops import install_shop
from engine.shopify import encode_session_token, sign_proxy
from engine.store.migrate import upgrade
from web.app import create_app

DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DOMAIN = "profile.myshopify.com"
KEY, SECRET = "profile-key", "profile-secret"


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--holds", type=int, default=2000)
    p.add_argument("--experts", type=int, default=20)
    p.add_argument("--refused", action="store_true",
                   help="measure refused holds (409): each slot is held first, unmeasured")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print cProfile's top N functions (cumulative)")
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    args = p.parse_args()

    server = make_url(args.postgres)
    name = f"consultbook_prof_{uuid.uuid4().hex[:10]}"
    admin_engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        return run(args, url)
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def run(args: argparse.Namespace, url: str) -> int:
    config = Config(database_url=url, api_key=KEY, api_secret=SECRET,
                    encryption_keys=(generate_key(),), max_holds_per_visitor=5)
    ctx = bootstrap(config)
    upgrade(ctx.db.engine)
    install_shop(ctx.db, ctx.clock, ctx.keyring, DOMAIN, "Europe/Berlin",
                 access_token="shpat_profile")
    client = falcon.testing.TestClient(create_app(ctx))

    def admin(method: str, path: str, body: Any = None) -> Any:
        token = encode_session_token(DOMAIN, api_key=KEY, api_secret=SECRET,
                                     now=int(time.time()))
        r = client.simulate_request(method, "/admin/api" + path, json=body,
                                    headers={"Authorization": f"Bearer {token}"})
        assert r.status_code < 300, (method, path, r.status_code, r.text)
        return r.json

    svc = admin("POST", "/services", {"title": "Consultation", "duration_minutes": 30,
                                      "variant_id": 4242})["id"]
    weekly = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                  "sun")}
    experts = []
    for n in range(args.experts):
        e = admin("POST", "/experts", {"name": f"Expert {n}", "email": f"e{n}@example.com",
                                       "services": [svc]})["id"]
        admin("PUT", f"/experts/{e}/schedule", {"weekly": weekly, "overrides": []})
        experts.append(e)

    first = (datetime.now(UTC) + timedelta(days=2)).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)
    warm = 100
    need = args.holds + warm
    slots = [(experts[i % len(experts)],
              first + timedelta(minutes=30 * (i // len(experts))))
             for i in range(need)]

    def query(customer: str) -> str:
        from urllib.parse import urlencode

        signed = {"shop": DOMAIN, "path_prefix": "/apps/consult",
                  "timestamp": str(int(time.time())), "logged_in_customer_id": customer}
        signed["signature"] = sign_proxy(signed, SECRET)
        return urlencode(signed)

    statuses: Counter[int] = Counter()
    customer = 0

    def hold(expert: str, start: datetime) -> None:
        nonlocal customer
        customer += 1
        r = client.simulate_post(
            "/proxy/holds", query_string=query(f"c{customer}"),
            json={"service": svc, "expert": expert,
                  "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")},
            headers={"X-Forwarded-For": "203.0.113.7"})
        statuses[r.status_code] += 1

    for e, s in slots[:warm]:
        hold(e, s)
        if args.refused:
            hold(e, s)
    if args.refused:  # the winners, unmeasured
        for e, s in slots[warm:]:
            hold(e, s)
    statuses.clear()

    counted = {"all": 0, "write": 0}
    shapes: Counter[str] = Counter()

    def listener(conn: Any, _c: Any, statement: str, *_: Any) -> None:
        counted["all"] += 1
        shapes[" ".join(statement.split())[:90]] += 1

    with ctx.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    event.listen(ctx.db.engine, "before_cursor_execute", listener)
    backends = [int(r[0]) for r in ctx.db.engine.connect().execute(text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))]
    pg0 = {b: _ticks(b) for b in backends}
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    prof = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not wall
    if prof:
        prof.enable()
    for e, s in slots[warm:]:
        hold(e, s)  # wins, or (--refused) is refused
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    hz = os.sysconf("SC_CLK_TCK")
    pg = sum(_ticks(b) - pg0[b] for b in backends if os.path.exists(f"/proc/{b}")) / hz
    n = sum(statuses.values())
    app = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    print(f"{n} requests, statuses {dict(statuses)}; load average "
          f"{open('/proc/loadavg').read().split()[:3]}")
    print(f"per request: {counted['all'] / n:.2f} statements, app CPU "
          f"{app / n * 1e3:.2f} ms, PostgreSQL CPU {pg / n * 1e3:.2f} ms, wall "
          f"{wall / n * 1e3:.2f} ms")
    for shape, k in shapes.most_common(15):
        print(f"  {k / n:5.2f}  {shape}")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
        pstats.Stats(prof).print_callees("insert_last|create_hold")
    ctx.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
