"""Double booking is impossible, by the database: many processes fight over the same and
over overlapping slots of services with different durations and buffers.

Each process has its own engine and connection pool and calls the real app (the
falcon WSGI app in-process, through ``falcon.testing``), so the only thing the
processes share is the database. Afterwards no two live claims of an expert overlap,
every request got either 201 or 409 (never a 5xx), and the winners are exactly the
live claims.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from engine.store.models import LIVE_STATUSES, Claim
from tests.conftest import Admin, make_catalog

PROCESSES = 6
REQUESTS_PER_PROCESS = 40

# Tuesday 2026-12-01, Berlin (UTC+1): 09:00-12:00 local = 08:00-11:00Z, on a 15-min grid.
STARTS = [f"2026-12-01T{8 + m // 60:02d}:{m % 60:02d}:00Z" for m in range(0, 180, 15)]


def _fight(db_url: str, domain: str, services: list[str], expert: str, seed: int,
           barrier: Any, out: Any) -> None:
    import falcon.testing

    from engine.bootstrap import bootstrap
    from engine.clock import FixedClock
    from tests.conftest import NOW, make_config, proxy_query
    from web.app import create_app

    ctx = bootstrap(make_config(db_url, max_holds_per_visitor=10_000), clock=FixedClock(NOW))
    client = falcon.testing.TestClient(create_app(ctx))
    rng = random.Random(seed)
    plan = [(rng.choice(services), rng.choice(STARTS)) for _ in range(REQUESTS_PER_PROCESS)]
    # everyone starts with the same slot: the pure "same slot" fight
    plan[0] = (services[0], STARTS[4])
    barrier.wait(timeout=60)
    results = []
    for n, (service, start) in enumerate(plan):
        r = client.simulate_post(
            "/proxy/holds", query_string=proxy_query(ctx, domain, {},
                                                     logged_in_customer_id=f"{seed}-{n}"),
            json={"service": service, "expert": expert, "start": start})
        results.append((service, start, r.status_code,
                        r.json.get("hold") if r.status_code == 201 else
                        r.json["error"]["code"]))
    ctx.db.dispose()
    out.put(results)


def _overlaps(claims: list[tuple[datetime, datetime]]) -> list[Any]:
    claims = sorted(claims)
    return [(a, b) for a, b in itertools.pairwise(claims) if b[0] < a[1]]


@pytest.mark.slow
def test_processes_fighting_over_slots_never_double_book(admin: Admin, ctx: Any,
                                                         db_url: str) -> None:
    cat = make_catalog(admin, duration=30)
    svc_long = admin("POST", "/services", {"title": "Long", "duration_minutes": 60,
                                           "interval_minutes": 15,
                                           "buffer_after_minutes": 15}).json["id"]
    svc_odd = admin("POST", "/services", {"title": "Odd", "duration_minutes": 45,
                                          "interval_minutes": 15,
                                          "buffer_before_minutes": 10}).json["id"]
    svc_short = admin("PATCH", f"/services/{cat['service']}",
                      {"interval_minutes": 15}).json["id"]
    services = [svc_short, svc_long, svc_odd]
    assert admin("PATCH", f"/experts/{cat['expert']}", {"services": services}).status_code == 200

    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(PROCESSES)
    out = mp.Queue()
    procs = [mp.Process(target=_fight, args=(db_url, "alpha.myshopify.com", services,
                                             cat["expert"], seed, barrier, out))
             for seed in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [r for _ in procs for r in out.get(timeout=180)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    statuses = {status for _, _, status, _ in results}
    assert statuses <= {201, 409}, statuses
    losers = [r for r in results if r[2] == 409]
    assert all(code == "slot_unavailable" for _, _, _, code in losers)
    winners = {hold for _, _, status, hold in results if status == 201}

    with ctx.db.read() as s:
        live = s.execute(select(Claim.id, Claim.claim_start, Claim.claim_end)
                         .where(Claim.expert_id == cat["expert"],
                                Claim.status.in_(LIVE_STATUSES))).all()
    assert {c.id for c in live} == winners
    assert _overlaps([(c.claim_start, c.claim_end) for c in live]) == []
    # the opening fight over one slot had exactly one winner
    first = [r for r in results if (r[0], r[1]) == (services[0], STARTS[4])]
    assert sum(1 for r in first if r[2] == 201) <= 1
    assert len(first) >= PROCESSES
    # and the table is not trivially empty: time was actually sold
    assert len(winners) >= 4
    # every loser lost to a real overlap with a winner's claimed range
    by_start = {r[3]: r for r in results if r[2] == 201}
    assert len(by_start) == len(winners)
    assert all(c.claim_start.tzinfo is not None for c in live)
    assert datetime(2026, 12, 1, tzinfo=UTC) < min(c.claim_start for c in live)
