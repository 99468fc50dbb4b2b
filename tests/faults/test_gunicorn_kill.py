"""A gunicorn worker ``kill -9``-ed in the middle of 200 concurrent holds on 20 slots.

Ten customers race for each slot. The killed worker's requests get a dropped connection
(the client cannot know whether a hold it sent was made); everyone else gets 201 or
409 -- never a 5xx. The database is the judge: each slot has exactly one live hold (a
killed request's open transaction dies with its connection and cannot block or
double-book the slot), every 201 is that slot's live hold, and the sessions' seat counts
equal the live claims' seats. Gunicorn replaces the dead worker and the app answers.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks._harness import _children
from tests.faults.topology import Deployment, OwnPostgres

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SLOTS = 20
PER_SLOT = 10
DROPPED = -1  # the connection was closed or reset without an answer


@pytest.fixture
def topology(own_postgres: OwnPostgres) -> Iterator[Deployment]:
    pg = own_postgres
    deploy = None
    try:
        deploy = Deployment(pg.url)
        deploy.serve(workers=2)
        yield deploy
    finally:
        if deploy is not None:
            deploy.close()


def _workers(deploy: Deployment) -> list[int]:
    return _children(deploy.procs["serve"].pid)


def test_worker_killed_during_concurrent_holds_one_winner_per_slot(
        topology: Deployment) -> None:
    deploy = topology
    service, (expert,) = deploy.catalog(experts=1)
    status, doc = deploy.availability(service)
    assert status == 200
    starts = [s["start"] for s in doc["slots"]][:SLOTS]
    assert len(starts) == SLOTS
    before = _workers(deploy)
    assert len(before) == 2, before

    results: list[tuple[str, int, str | None]] = []  # (start, status, hold id)
    conflicts: set[str] = set()  # the 409s' error codes
    lock = threading.Lock()
    killed = threading.Event()
    go = threading.Barrier(SLOTS * PER_SLOT)

    def hold(start: str, customer: str) -> None:
        go.wait(30)
        try:
            code, body = deploy.hold(service, expert, start, customer, timeout=30)
        except (OSError, http.client.HTTPException):
            code, body = DROPPED, None
        with lock:
            if code == 409:
                conflicts.add(body["error"]["code"])
            results.append((start, code, body.get("hold") if code == 201 else None))
            answered = len(results)
        if answered == SLOTS * PER_SLOT // 4 and not killed.is_set():
            killed.set()  # mid-way: a quarter answered, the rest in flight or queued
            os.kill(before[0], signal.SIGKILL)

    with ThreadPoolExecutor(SLOTS * PER_SLOT) as pool:
        # Customers of all slots interleaved, so every slot races on both workers.
        for n in range(PER_SLOT):
            for s, start in enumerate(starts):
                pool.submit(hold, start, f"k{s}-{n}")
    assert killed.is_set()
    assert len(results) == SLOTS * PER_SLOT

    codes = Counter(code for _, code, _ in results)
    assert set(codes) <= {201, 409, DROPPED}, codes
    assert DROPPED in codes, codes  # the kill hit requests in flight
    assert conflicts == {"slot_unavailable"}, conflicts

    # Gunicorn replaces the killed worker, and the app answers.
    deadline = time.monotonic() + 30
    while True:
        now = _workers(deploy)
        if len(now) == 2 and before[0] not in now:
            break
        assert time.monotonic() < deadline, (now, deploy.log("serve")[-3000:])
        time.sleep(0.2)
    for _ in range(4):  # both workers (connections are spread over them)
        assert deploy.availability(service, days=1)[0] == 200

    live = deploy.sql("SELECT id, start_at, seats, session_key FROM claims "
                      "WHERE status IN ('held', 'pending', 'confirmed')")
    wins: dict[str, list[str]] = {}
    dropped: set[str] = set()
    for start, code, hold_id in results:
        if code == 201:
            assert hold_id is not None
            wins.setdefault(start, []).append(hold_id)
        elif code == DROPPED:
            dropped.add(start)
    by_start: dict[str, list[str]] = {}
    for claim_id, start_at, _, _ in live:
        by_start.setdefault(start_at.strftime("%Y-%m-%dT%H:%M:%SZ"), []).append(claim_id)
    # Exactly one live hold per slot (10 customers each, and a dropped request rolled back
    # or committed: either way one holder).
    assert {s: len(ids) for s, ids in by_start.items()} == {s: 1 for s in starts}, by_start
    for start in starts:
        if start in wins:  # a 201 is the slot's live hold, and there is only one
            assert wins[start] == by_start[start], (start, wins[start], by_start[start])
        else:  # no 201: the winner's answer was lost with the killed worker
            assert start in dropped, (start, by_start[start])

    # The sessions' seat counts are the live claims' seats.
    sessions = dict(deploy.sql("SELECT key, seats_used FROM claim_sessions"))
    seats: Counter[str] = Counter()
    for _, _, n, key in live:
        seats[key] += n
    assert {k: v for k, v in sessions.items() if v} == dict(seats), (sessions, seats)
