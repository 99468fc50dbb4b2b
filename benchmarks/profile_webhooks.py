"""Where a webhook delivery's time goes, in one process: CPU, statements and
wall time waiting, for first deliveries and for duplicates.

Run: ``python benchmarks/profile_webhooks.py [--orders 300] [--profile first|dup]``.
It sets up a database as ``bench_webhooks.py`` does (a real ``consultbook serve`` makes
the catalog and one hold per order, then stops), then sends the signed ``orders/paid``
deliveries through falcon's TestClient against an in-process app on the same
PostgreSQL database, one at a time: each order's first delivery, then all duplicates.
Per kind it prints wall and CPU milliseconds per delivery (wall - CPU: waiting on the
database, its commits and locks), statements per delivery and, with ``--profile``, the
top of a cProfile of that kind.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import falcon.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    API_KEY,
    API_SECRET,
    DEFAULT_SERVER,
    Bench,
    CpuMeter,
    hold_request,
    loadavg,
    run_load,
)
from bench_webhooks import delivery
from sqlalchemy import event

from engine.bootstrap import bootstrap
from engine.config import Config
from web.app import create_app


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=300)
    p.add_argument("--profile", choices=("first", "dup"), default=None)
    p.add_argument("--postgres", default=DEFAULT_SERVER)
    p.add_argument("--top", type=int, default=35)
    args = p.parse_args()
    env = {"CONSULTBOOK_HOLD_TTL_SECONDS": "7200", "CONSULTBOOK_NO_EMBEDDED_WORKER": "true"}
    with Bench(args.postgres, env) as bench:
        bench.start_server(1)
        service, _ = bench.catalog(10)
        slots = bench.slots(service, 3)[:args.orders]
        made, _ = run_load(bench.port, [hold_request(service, s["expert"], s["start"], f"c{i}")
                                        for i, s in enumerate(slots)], 4)
        holds = [json.loads(r.body)["hold"] for r in made if r.status == 201]
        bench.stop_server()
        config = Config(database_url=bench.url, api_key=API_KEY, api_secret=API_SECRET,
                        encryption_keys=(bench.env["CONSULTBOOK_ENCRYPTION_KEYS"],),
                        outbox_dir=bench.env["CONSULTBOOK_OUTBOX_DIR"])
        ctx = bootstrap(config)
        ctx.after_commit = None  # no worker here: ingest alone
        client = falcon.testing.TestClient(create_app(ctx))
        statements: list[str] = []
        event.listen(ctx.db.engine, "before_cursor_execute",
                     lambda _c, _cur, s, *_a: statements.append(s))
        reqs = [delivery(1001 + i, h, f"prof-{i}") for i, h in enumerate(holds)]

        def send(r: Any) -> None:
            res = client.simulate_post(r.path, body=r.body, headers=r.headers)
            assert res.status_code == 200, res.text

        # warm-up: imports, pool, plans
        for r in reqs[:20]:
            send(r)
        for kind, batch in (("first", reqs[20:]), ("dup", reqs[20:])):
            statements.clear()
            # CPU time, not wall: the waits on PostgreSQL would otherwise dominate
            prof = cProfile.Profile(time.process_time) if args.profile == kind else None
            meter = CpuMeter(0, bench.name)
            meter.start()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            for r in batch:
                send(r)
            if prof:
                prof.disable()
            wall = (time.perf_counter() - wall0) * 1e3 / len(batch)
            cpu = (time.process_time() - cpu0) * 1e3 / len(batch)
            pg = meter.stop()["postgres"] * wall  # cores x ms per delivery
            print(f"{kind:>5}: {len(batch)} deliveries, wall {wall:.2f} ms, CPU {cpu:.2f} ms "
                  f"(+ PostgreSQL {pg:.2f} ms), waiting {wall - cpu - pg:.2f} ms, statements "
                  f"{len(statements) / len(batch):.1f}; load {loadavg()}"
                  + (" (profiled: slower)" if prof else ""))
            if prof:
                pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
            per = len(statements) // len(batch)
            for s in statements[-per:]:
                print("   ", " ".join(s.split())[:150])
        ctx.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
