"""Double booking is impossible, by the database: many processes fight over the same and
over overlapping slots of services with different durations and buffers.

Each process has its own engine and connection pool and calls the real app (the
falcon WSGI app in-process, through ``falcon.testing``), so the only thing the
processes share is the database. Two phases:

* contested rounds: at a barrier, every process asks at once for one of a set of
  ranges that pairwise overlap (different services, offsets and buffers, all covering
  one common quarter hour) on an otherwise empty day: exactly one request of each round
  wins, and every other gets ``409 slot_unavailable``;
* a free-for-all of random requests over the same three hours.

Afterwards: every request got 201 or 409 ``slot_unavailable`` (never a 5xx); the
winners are exactly the live claims, each where it was asked for; no two live claims
overlap; and every loser's claimed range (its meeting plus its service's buffers)
overlaps a winner's, so nobody was turned away from free time. The holds never expire
(the clock is fixed), so every winner is still live when the losers are judged.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from engine.store.models import LIVE_STATUSES, Claim
from tests.conftest import Admin, make_catalog

PROCESSES = 6
REQUESTS_PER_PROCESS = 40

# Tuesday 2026-12-01, Berlin (UTC+1): 09:00-12:00 local = 08:00-11:00Z, on a 15-min grid.
STARTS = [f"2026-12-01T{8 + m // 60:02d}:{m % 60:02d}:00Z" for m in range(0, 180, 15)]
# Wednesday: one contested round per base time, nothing else asked for that day.
ROUNDS = ["2026-12-02T08:30:00Z", "2026-12-02T10:30:00Z", "2026-12-02T12:30:00Z",
          "2026-12-02T14:00:00Z"]
# (duration, buffer before, buffer after) of the three services, in minutes.
SHAPES = {"short": (30, 0, 0), "long": (60, 0, 15), "odd": (45, 10, 0)}
# Thursday: requests taken in turns (one process at a time, round robin), so each answer
# is determined: 201 exactly when the claimed range (buffers included) is free. The plan
# walks along the day with ranges that touch (must win) and overlap by a meeting or by
# a buffer only (must lose).
TURNS = [
    ("short", "2026-12-03T08:00:00Z", 201),  # [08:00, 08:30)
    ("short", "2026-12-03T08:15:00Z", 409),  # meeting overlap
    ("short", "2026-12-03T08:30:00Z", 201),  # touches [08:00, 08:30)
    ("odd", "2026-12-03T09:15:00Z", 201),  # [09:05, 10:00)
    ("odd", "2026-12-03T09:00:00Z", 409),  # [08:50, 09:45): overlap
    ("long", "2026-12-03T10:00:00Z", 201),  # [10:00, 11:15): touches odd
    ("short", "2026-12-03T11:00:00Z", 409),  # only long's after-buffer is in the way
    ("short", "2026-12-03T11:15:00Z", 201),  # touches long's buffer
    ("odd", "2026-12-03T11:45:00Z", 409),  # only its before-buffer reaches [.., 11:45)
    ("odd", "2026-12-03T12:00:00Z", 201),  # [11:50, 12:45)
    ("long", "2026-12-03T12:45:00Z", 201),  # touches odd
    ("short", "2026-12-03T08:45:00Z", 409),  # overlaps [08:30, 09:00)
]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def round_request(base: str, services: list[str], seed: int) -> tuple[str, str]:
    """What process ``seed`` asks for in the round at ``base``: one of the three services
    at ``base`` or 15 minutes later. Every such range contains [base+15, base+30)
    (short [0,30) / [15,45), long [0,75) / [15,90), odd [-10,45) / [5,60)), so any two
    requests of a round overlap and exactly one can win."""
    offset = timedelta(minutes=15 * ((seed // len(services)) % 2))
    return services[seed % len(services)], _iso(_parse(base) + offset)


def _fight(db_url: str, domain: str, services: list[str], expert: str, seed: int,
           barrier: Any, out: Any) -> None:
    import falcon.testing

    from engine.bootstrap import bootstrap
    from engine.clock import FixedClock
    from tests.conftest import NOW, make_config, proxy_query
    from web.app import create_app

    ctx = bootstrap(make_config(db_url, max_holds_per_visitor=10_000), clock=FixedClock(NOW))
    client = falcon.testing.TestClient(create_app(ctx))
    results: list[tuple[str, str, str, int, str, int, int]] = []

    def hold(phase: str, service: str, start: str) -> None:
        # Wall-clock nanoseconds (one clock for all processes of this machine) around the
        # request: a claim committed by one request lies between its two readings.
        sent = time.time_ns()
        r = client.simulate_post(
            "/proxy/holds", query_string=proxy_query(
                ctx, domain, {}, logged_in_customer_id=f"{seed}-{len(results)}"),
            json={"service": service, "expert": expert, "start": start})
        body = r.json if isinstance(r.json, dict) else {}
        outcome = (body.get("hold") if r.status_code == 201 else
                   body.get("error", {}).get("code", r.text[:200]))
        results.append((phase, service, start, r.status_code, str(outcome), sent,
                        time.time_ns()))

    for base in ROUNDS:
        barrier.wait(timeout=60)  # everyone asks at once
        hold(base, *round_request(base, services, seed))
    rng = random.Random(seed)
    plan = [(rng.choice(services), rng.choice(STARTS)) for _ in range(REQUESTS_PER_PROCESS)]
    barrier.wait(timeout=60)
    for service, start in plan:
        hold("free-for-all", service, start)
    keys = dict(zip(SHAPES, services, strict=True))
    for n, (key, start, _) in enumerate(TURNS):
        barrier.wait(timeout=60)  # the previous turn's request has been answered
        if n % PROCESSES == seed:
            hold("turn", keys[key], start)
    ctx.db.dispose()
    out.put(results)


def _overlaps(claims: list[tuple[datetime, datetime]]) -> list[Any]:
    claims = sorted(claims)
    return [(a, b) for a, b in itertools.pairwise(claims) if b[0] < a[1]]


@pytest.mark.slow
def _deadlocks(ctx: Any) -> int | None:
    """The deadlocks PostgreSQL has counted in this database (None on SQLite); the
    counts of backends that have ended are in it (they report as they exit)."""
    if ctx.db.dialect != "postgresql":
        return None
    time.sleep(0.5)  # a backend that just ended has reported by then
    with ctx.db.read() as s:
        s.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(s.execute(text("SELECT deadlocks FROM pg_stat_database "
                                  "WHERE datname = current_database()")).scalar_one())


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
    shape = dict(zip(services, (SHAPES["short"], SHAPES["long"], SHAPES["odd"]), strict=True))
    assert admin("PATCH", f"/experts/{cat['expert']}", {"services": services}).status_code == 200

    def claimed(service: str, start: str) -> tuple[datetime, datetime]:
        """The range a hold of ``service`` at ``start`` claims: meeting plus buffers."""
        duration, before, after = shape[service]
        t = _parse(start)
        return t - timedelta(minutes=before), t + timedelta(minutes=duration + after)

    deadlocks_before = _deadlocks(ctx)
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
    assert len(results) == PROCESSES * (len(ROUNDS) + REQUESTS_PER_PROCESS) + len(TURNS)

    # On PostgreSQL the holds of one expert take the expert's lock first (migration
    # 0018): however they overlap, none waited for another in the exclusion check, so
    # none deadlocked (each deadlock had cost a second and a run again, five a 503).
    if deadlocks_before is not None:
        assert _deadlocks(ctx) == deadlocks_before
    # Every answer is a win or a refusal for overlap: nothing else, never a 5xx.
    assert {(r[3], r[4]) for r in results if r[3] != 201} <= {
        (409, "slot_unavailable")}, sorted({(r[3], r[4]) for r in results if r[3] != 201})
    # hold id -> (service, start, when its request was sent)
    winners = {code: (service, start, sent) for _, service, start, status, code, sent, _
               in results if status == 201}
    assert len(winners) == sum(1 for r in results if r[3] == 201)  # distinct hold ids

    with ctx.db.read() as s:
        live = s.execute(select(Claim.id, Claim.service_id, Claim.start_at, Claim.claim_start,
                                Claim.claim_end)
                         .where(Claim.expert_id == cat["expert"],
                                Claim.status.in_(LIVE_STATUSES))).all()
    # The winners are exactly the live claims, each where it was asked for, with the
    # range its service's buffers give; and no two of them overlap.
    assert {c.id for c in live} == set(winners)
    for c in live:
        service, start, _ = winners[c.id]
        assert (c.service_id, c.start_at) == (service, _parse(start))
        assert (c.claim_start, c.claim_end) == claimed(service, start)
    assert _overlaps([(c.claim_start, c.claim_end) for c in live]) == []

    # Each contested round: all of its requests pairwise overlap, the day was empty, so
    # exactly one won and the others were refused.
    for base in ROUNDS:
        asked = [r for r in results if r[0] == base]
        assert len(asked) == PROCESSES
        ranges = [claimed(r[1], r[2]) for r in asked]
        assert all(a[0] < b[1] and b[0] < a[1] for a, b in itertools.combinations(ranges, 2))
        assert sorted(r[3] for r in asked) == [201] + [409] * (PROCESSES - 1), (base, asked)

    # Taken in turns, each answer is the one the claimed ranges decide.
    keys = dict(zip(SHAPES, services, strict=True))
    turns = {(r[1], r[2]): r[3] for r in results if r[0] == "turn"}
    assert turns == {(keys[k], start): want for k, start, want in TURNS}

    # Every loser lost to a real overlap: its claimed range (buffers included) overlaps
    # the claimed range of a winner whose request was sent before the refusal came back
    # (a winner sent later cannot have been in the way). Holds do not expire here, so
    # every winner is still among the live claims.
    for phase, service, start, status, _, _, done in results:
        if status != 409:
            continue
        lo, hi = claimed(service, start)
        assert any(c.claim_start < hi and lo < c.claim_end and winners[c.id][2] < done
                   for c in live), (
            f"{phase}: {service} at {start} was refused although [{lo}, {hi}) was free")

    # And time was actually sold in the free-for-all too (not only in the rounds).
    free_for_all_wins = [r for r in results if r[0] == "free-for-all" and r[3] == 201]
    assert len(free_for_all_wins) >= 4
    assert all(c.claim_start.tzinfo is not None for c in live)
    assert datetime(2026, 12, 1, tzinfo=UTC) < min(c.claim_start for c in live)
