"""Seats, limits and "any" under real concurrency: several processes, each with its own
engine and connection pool calling the real app (falcon in-process), and several threads
in each, all released at once onto the same session, day or start. The only thing they
share is the database, SQLite or PostgreSQL.

* 30 holds on one 3-seat session: exactly 3 seats are granted; with mixed seat counts,
  never more than 3, and every loser asked for more than was left;
* 20 holds on different slots of one day with a day limit of 3 (the service's, then the
  expert's across two services): exactly 3 win, the others are ``limit_reached``;
* a seated service and a one-to-one service of the same expert at the same times: no
  one-to-one claim ever overlaps a session;
* 20 ``expert: "any"`` holds at one start over 4 experts: exactly one per free expert,
  never one expert twice at one time.

Afterwards the database's seat and limit counters are checked to be exact.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.capacity.helpers import assert_counters_exact, live_claims, set_expert, set_service
from tests.conftest import Admin, Storefront, make_catalog

PROCESSES = 4
DOMAIN = "alpha.myshopify.com"

Result = tuple[int, dict[str, Any], int, dict[str, Any]]  # (round, body, status, json)


def _worker(seed: int, inbox: Any, barrier: Any, out: Any) -> None:
    """One client process, kept for the whole module (spawning and importing the app
    is what costs): each job is a database and rounds of requests; at each round's
    barrier every process fires its share at once, each request from a thread of its
    own, as a visitor of its own."""
    import falcon.testing

    from engine.bootstrap import bootstrap
    from engine.clock import FixedClock
    from tests.conftest import NOW, make_config, proxy_query
    from web.app import create_app

    while (job := inbox.get()) is not None:
        db_url, rounds = job
        results: list[Result] = []
        try:
            ctx = bootstrap(make_config(db_url, max_holds_per_visitor=10_000),
                            clock=FixedClock(NOW))
            app = create_app(ctx)

            def post(n: int, i: int, body: dict[str, Any]) -> Result:
                client = falcon.testing.TestClient(app)  # noqa: B023
                r = client.simulate_post("/proxy/holds", query_string=proxy_query(
                    ctx, DOMAIN, {}, logged_in_customer_id=f"p{seed}-r{n}-{i}"),  # noqa: B023
                    json=body)
                return n, body, r.status_code, r.json if isinstance(r.json, dict) else {}

            for n, bodies in enumerate(rounds):
                barrier.wait(timeout=120)  # every process at once
                with ThreadPoolExecutor(max(1, len(bodies))) as pool:
                    results.extend(pool.map(lambda ib: post(n, *ib),  # noqa: B023
                                            enumerate(bodies)))
            ctx.db.dispose()
            out.put((seed, results, None))
        except Exception as exc:  # reported to the test, which fails with it
            out.put((seed, results, repr(exc)))


class Clients:
    """:data:`PROCESSES` client processes (see :func:`_worker`)."""

    def __init__(self) -> None:
        mp = multiprocessing.get_context("spawn")
        self.barrier = mp.Barrier(PROCESSES)
        self.out = mp.Queue()
        self.inboxes = [mp.Queue() for _ in range(PROCESSES)]
        self.procs = [mp.Process(target=_worker, args=(p, self.inboxes[p], self.barrier,
                                                       self.out), daemon=True)
                      for p in range(PROCESSES)]
        for proc in self.procs:
            proc.start()

    def fight(self, db_url: str, rounds: list[list[dict[str, Any]]]) -> list[Result]:
        """Deal each round's requests out to the processes and run them; every answer."""
        for p, inbox in enumerate(self.inboxes):
            inbox.put((db_url, [bodies[p::PROCESSES] for bodies in rounds]))
        results: list[Result] = []
        for _ in self.procs:
            seed, got, error = self.out.get(timeout=300)
            assert error is None, f"client process {seed}: {error}"
            results.extend(got)
        assert len(results) == sum(len(b) for b in rounds)
        return results

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for proc in self.procs:
            proc.join(timeout=30)


@pytest.fixture(scope="module")
def clients() -> Iterator[Clients]:
    pool = Clients()
    yield pool
    pool.close()


def outcomes(results: list[Result], n: int) -> list[tuple[int, str | None]]:
    return sorted((status, body.get("error", {}).get("code") if status >= 400 else None)
                  for rnd, _, status, body in results if rnd == n)


def hold(service: str, expert: str, start: str, **extra: Any) -> dict[str, Any]:
    return {"service": service, "expert": expert, "start": start, **extra}


def _overlap(a: Any, b: Any) -> bool:
    return bool(a.claim_start < b.claim_end and b.claim_start < a.claim_end)


@pytest.mark.slow
def test_thirty_holds_on_a_three_seat_session(
        admin: Admin, ctx: Any, db_url: str, clients: Clients) -> None:
    cat = make_catalog(admin)
    set_service(ctx, cat["service"], seats=3)
    svc, exp = cat["service"], cat["expert"]
    rng = random.Random(11)
    mixed = [rng.choice((1, 1, 2, 3)) for _ in range(30)]
    results = clients.fight(db_url, [
        [hold(svc, exp, "2026-12-01T08:00:00Z") for _ in range(30)],
        [hold(svc, exp, "2026-12-01T09:00:00Z", seats=s) for s in mixed],
    ])
    assert outcomes(results, 0) == [(201, None)] * 3 + [(409, "slot_unavailable")] * 27
    won = [(body["seats"], r["seats"]) for n, body, status, r in results
           if n == 1 and status == 201]
    assert all(asked == granted for asked, granted in won)
    granted = sum(g for _, g in won)
    assert 1 <= granted <= 3
    left = 3 - granted
    for n, body, status, r in results:
        if n == 1 and status != 201:
            assert (status, r["error"]["code"]) == (409, "slot_unavailable")
            assert body["seats"] > left, (body, left)  # refused only for want of seats
    claims = live_claims(ctx)
    assert sorted(c.seats for c in claims if c.start_at.hour == 8) == [1, 1, 1]
    assert sum(c.seats for c in claims if c.start_at.hour == 9) == granted
    assert {c.id for c in claims} == {r["hold"] for _, _, s, r in results if s == 201}
    assert_counters_exact(ctx)


def day_starts(day: str) -> list[str]:
    """20 distinct 15-minute slots of one day, from 09:00 Berlin."""
    return [f"2026-12-{day}T{8 + m // 60:02d}:{m % 60:02d}:00Z" for m in range(0, 300, 15)]


@pytest.mark.slow
def test_twenty_holds_on_one_day_with_a_service_day_limit_of_three(
        admin: Admin, ctx: Any, db_url: str, clients: Clients) -> None:
    cat = make_catalog(admin, duration=15)  # 32 slots from 09:00 to 17:00
    svc, exp = cat["service"], cat["expert"]
    set_service(ctx, svc, limits={"day": 3})
    results = clients.fight(db_url, [[hold(svc, exp, s) for s in day_starts("01")]])
    assert outcomes(results, 0) == [(201, None)] * 3 + [(409, "limit_reached")] * 17
    assert len(live_claims(ctx)) == 3
    assert_counters_exact(ctx)


@pytest.mark.slow
def test_twenty_holds_on_one_day_with_an_expert_day_limit_of_three(
        admin: Admin, ctx: Any, db_url: str, clients: Clients) -> None:
    """The expert's own limit, counted across two services raced at once."""
    cat = make_catalog(admin, duration=15)
    svc, exp = cat["service"], cat["expert"]
    other = admin("POST", "/services", {"title": "Other", "duration_minutes": 15}).json["id"]
    admin("PATCH", f"/experts/{exp}", {"services": [svc, other]})
    set_expert(ctx, exp, limits={"day": 3})
    results = clients.fight(db_url, [[hold(svc if n % 2 else other, exp, s)
                              for n, s in enumerate(day_starts("02"))]])
    assert outcomes(results, 0) == [(201, None)] * 3 + [(409, "limit_reached")] * 17
    assert len(live_claims(ctx)) == 3
    assert_counters_exact(ctx)


@pytest.mark.slow
def test_a_one_to_one_service_never_overlaps_a_session(
        admin: Admin, ctx: Any, db_url: str, clients: Clients) -> None:
    cat = make_catalog(admin, duration=60)
    group, exp = cat["service"], cat["expert"]
    set_service(ctx, group, seats=3)
    solo = admin("POST", "/services", {"title": "Solo", "duration_minutes": 30}).json["id"]
    admin("PATCH", f"/experts/{exp}", {"services": [group, solo]})
    rounds = []
    for hour in range(8, 15):  # 09:00 .. 15:00 Berlin
        at, half = f"2026-12-01T{hour:02d}:00:00Z", f"2026-12-01T{hour:02d}:30:00Z"
        bodies = [hold(group, exp, at) for _ in range(15)]
        bodies += [hold(solo, exp, at if n % 2 else half) for n in range(15)]
        random.Random(hour).shuffle(bodies)
        rounds.append(bodies)
    results = clients.fight(db_url, rounds)
    assert {(s, r["error"]["code"]) for _, _, s, r in results if s != 201} <= {
        (409, "slot_unavailable")}
    claims = live_claims(ctx)
    assert {c.id for c in claims} == {r["hold"] for _, _, s, r in results if s == 201}
    for a, b in itertools.combinations(claims, 2):
        if a.session_key != b.session_key:
            assert not _overlap(a, b), (a.service_id, a.start_at, b.service_id, b.start_at)
    for n in range(len(rounds)):
        assert (201, None) in outcomes(results, n)  # each hour was sold to someone
    # Each session has at most its three seats, and a round won by the group sold all three
    # (the session's requests outnumber its seats and nothing else could refuse them).
    sessions: dict[str, int] = {}
    for c in claims:
        if c.service_id == group:
            sessions[c.session_key] = sessions.get(c.session_key, 0) + c.seats
    assert sessions and all(v == 3 for v in sessions.values()), sessions
    assert_counters_exact(ctx)


@pytest.mark.slow
def test_any_never_assigns_one_expert_twice_at_one_time(
        admin: Admin, ctx: Any, db_url: str, clients: Clients) -> None:
    cat = make_catalog(admin, experts=4)
    svc, experts = cat["service"], cat["experts"]
    starts = [f"2026-12-01T{h:02d}:00:00Z" for h in range(8, 12)]
    # One expert is already taken at the last start.
    store = Storefront(admin.client, ctx, DOMAIN)
    assert store.hold(svc, experts[2], starts[-1], customer="early").status_code == 201
    results = clients.fight(db_url, [[hold(svc, "any", s) for _ in range(20)] for s in starts])
    for n in range(len(starts)):
        free = 4 if n < len(starts) - 1 else 3
        assert outcomes(results, n) == ([(201, None)] * free
                                        + [(409, "slot_unavailable")] * (20 - free)), n
        assigned = [r["expert"] for rnd, _, s, r in results if rnd == n and s == 201]
        assert sorted(assigned) == sorted(set(assigned)), assigned
    claims = live_claims(ctx)
    for a, b in itertools.combinations(claims, 2):
        if a.expert_id == b.expert_id:
            assert not _overlap(a, b), (a.expert_id, a.start_at)
    assert len(claims) == 4 * len(starts)  # every expert at every start (one held early)
    assert_counters_exact(ctx)
