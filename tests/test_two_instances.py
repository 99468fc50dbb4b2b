"""Two ``consultbook serve`` instances over one PostgreSQL database and Redis are one
deployment (issue 14).

Real processes: instance A and instance B (``consultbook serve --workers 2`` each, on
their own ports) over one fresh database on ``CONSULTBOOK_TEST_POSTGRES_URL`` and the
Redis of ``CONSULTBOOK_TEST_REDIS_URL`` (broker and cache), started with the helpers of
``tests.faults.topology``. Then:

* a race across them -- 40 holds on one slot, half through each, released at once --
  has exactly one winner (201), every other answer is 409 ``slot_unavailable``, no 5xx,
  and the database has one live claim on the slot;
* whatever either caches, a claim made through one is never hidden from the other:
  availability fetched from A (warming any cache of A's workers), a hold through B, and
  the very next availability from A does not offer the slot; the hold released through
  B, the very next from A offers it again; a hold through an instance with a short hold
  lifetime stops hiding the slot from A as soon as it expires;
* an admin change through A (a service's duration, an expert's hours) is in every
  availability answer of B once the read cache's TTL (``ReadCache``, 1 s) has passed,
  though B had just answered for the old catalog -- and in B's *very next* answer: B's
  cached catalog is checked against the shop's catalog version (migration 0016), which
  A's edit moved.

A has two workers: each check asks it several times on new connections (gunicorn's
workers share the port, so they land on both), and every answer must be right.
"""

from __future__ import annotations

import copy
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks._harness import _children, proxy_query
from engine.store.db import ReadCache
from tests.faults.topology import Deployment, free_port

POSTGRES_URL = os.environ.get("CONSULTBOOK_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("CONSULTBOOK_TEST_REDIS_URL", "")

pytestmark = [
    pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis,
    pytest.mark.skipif(not POSTGRES_URL or not REDIS_URL,
                       reason="needs CONSULTBOOK_TEST_POSTGRES_URL and "
                              "CONSULTBOOK_TEST_REDIS_URL"),
]

WORKERS = 2
ASKS = 6  # availability requests per check (new connections: both workers answer)
SHORT_TTL = 3  # seconds, the hold lifetime of the instance used for the expiry check
CONTENDERS = 40
# How old a process's unversioned read-cache entries may be, seconds (its catalog
# entry is versioned instead: exact).
CATALOG_TTL = ReadCache().ttl


# --------------------------------------------------------------------------- instances


def instance(deploy: Deployment, name: str, workers: int = WORKERS,
             **env: str) -> Deployment:
    """Another ``consultbook serve`` of ``deploy`` (same database, Redis, secrets and
    shop) on a port of its own, with ``env`` on top; requests through the returned view
    go to it. ``deploy.close()`` stops it."""
    inst = copy.copy(deploy)  # shares the processes, engine and folder of ``deploy``
    inst.env = {**deploy.env, **env}
    inst.port = free_port()
    proc = inst.start(name, "serve", "--workers", str(workers), "--port", str(inst.port))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, inst.log(name)[-3000:]
        try:
            if (inst.request("GET", "/healthz", timeout=2)[0] == 200
                    and len(_children(proc.pid)) >= workers):
                time.sleep(0.5)  # the last worker's app is built
                return inst
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not come up: " + inst.log(name)[-3000:])


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    server = make_url(POSTGRES_URL)
    name = f"consultbook_two_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    deploy = None
    try:
        deploy = Deployment(server.set(database=name).render_as_string(hide_password=False),
                            broker_url=REDIS_URL, extra_env={"CONSULTBOOK_REDIS_URL": REDIS_URL})
        yield deploy
    finally:
        if deploy is not None:
            deploy.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def a(deployment: Deployment) -> Deployment:
    return instance(deployment, "serve-a")


@pytest.fixture(scope="module")
def b(deployment: Deployment) -> Deployment:
    return instance(deployment, "serve-b")


# --------------------------------------------------------------------------- helpers


def offered(inst: Deployment, service: str, expert: str) -> list[dict[str, Any]]:
    """The expert's slots that ``inst`` offers for ``service``, tomorrow and the day after."""
    status, doc = inst.availability(service)
    assert status == 200, doc
    return [s for s in doc["slots"] if s["expert"] == expert]


def starts(inst: Deployment, service: str, expert: str) -> set[str]:
    return {s["start"] for s in offered(inst, service, expert)}


def asks(inst: Deployment, service: str, expert: str) -> list[set[str]]:
    """``ASKS`` availability answers of ``inst`` in a row, each on a new connection."""
    return [starts(inst, service, expert) for _ in range(ASKS)]


def release(inst: Deployment, hold: str, customer: str) -> int:
    status, doc = inst.request("DELETE", f"/proxy/holds/{hold}?" + proxy_query(
        logged_in_customer_id=customer), headers={"X-Forwarded-For": "203.0.113.7"})
    assert status == 204, doc
    return status


def live_claims(inst: Deployment, expert: str, start: str) -> list[str]:
    return [r[0] for r in inst.sql(
        "SELECT id FROM claims WHERE expert_id = :e AND start_at = CAST(:s AS timestamptz) "
        "AND status IN ('held', 'pending', 'confirmed')",
        e=expert, s=start.replace("Z", "+00:00"))]


# --------------------------------------------------------------------------- tests


def test_a_race_across_the_two_instances_has_one_winner(a: Deployment, b: Deployment) -> None:
    service, (expert,) = a.catalog(experts=1)
    start = sorted(starts(a, service, expert))[0]
    assert start in starts(b, service, expert)
    gate = threading.Barrier(CONTENDERS)
    answers: list[tuple[str, int, Any]] = []
    lock = threading.Lock()

    def contend(i: int) -> None:
        inst, via = (a, "A") if i % 2 == 0 else (b, "B")
        gate.wait()
        try:
            status, doc = inst.hold(service, expert, start, f"race-{i}")
        except OSError as exc:
            status, doc = 0, repr(exc)
        with lock:
            answers.append((via, status, doc))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(CONTENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    statuses = Counter(status for _, status, _ in answers)
    assert statuses == {201: 1, 409: CONTENDERS - 1}, answers
    assert all(doc["error"]["code"] == "slot_unavailable"
               for _, status, doc in answers if status == 409)
    (winner,) = [doc["hold"] for _, status, doc in answers if status == 201]
    assert live_claims(a, expert, start) == [winner]
    assert start not in starts(a, service, expert)
    assert start not in starts(b, service, expert)


def test_a_claim_through_one_instance_is_never_hidden_by_the_other(
        deployment: Deployment, a: Deployment, b: Deployment) -> None:
    service, (expert,) = a.catalog(experts=1)
    slot = sorted(starts(a, service, expert))[3]
    for seen in asks(a, service, expert):  # warm whatever A caches, on both its workers
        assert slot in seen

    status, doc = b.hold(service, expert, slot, "cache-1")
    assert status == 201, doc
    after_hold = asks(a, service, expert)
    assert [slot in seen for seen in after_hold] == [False] * ASKS, \
        "A still offers a slot held through B (the first answer is the very next one)"

    release(b, doc["hold"], "cache-1")
    after_release = asks(a, service, expert)
    assert [slot in seen for seen in after_release] == [True] * ASKS, \
        "A does not offer a slot whose hold was released through B"

    # Expiry: a hold made through an instance whose holds last SHORT_TTL seconds.
    short = instance(deployment, "serve-short-ttl", workers=1,
                     CONSULTBOOK_HOLD_TTL_SECONDS=str(SHORT_TTL))
    status, doc = short.hold(service, expert, slot, "cache-2")
    assert status == 201, doc
    expires = datetime.fromisoformat(doc["expires_at"].replace("Z", "+00:00"))
    assert slot not in starts(a, service, expert)
    # expires_at is given to the second: the hold ends within the second after it
    time.sleep(max(0.0, (expires - datetime.now(expires.tzinfo)).total_seconds()) + 1.5)
    after_expiry = asks(a, service, expert)
    assert [slot in seen for seen in after_expiry] == [True] * ASKS, \
        "A does not offer a slot whose hold (made through another instance) has expired"


def _durations(inst: Deployment, service: str, expert: str) -> set[float]:
    seen = offered(inst, service, expert)
    assert seen
    return {_minutes(s) for s in seen}


def _hours(inst: Deployment, service: str, expert: str) -> set[int]:
    tz = ZoneInfo("Europe/Berlin")
    seen = offered(inst, service, expert)
    assert seen
    return {datetime.fromisoformat(s["start"].replace("Z", "+00:00")).astimezone(tz).hour
            for s in seen}


WEEKLY_9_TO_11 = {d: [["09:00", "11:00"]]
                  for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def test_an_admin_change_through_one_instance_is_in_the_others_answers(
        a: Deployment, b: Deployment) -> None:
    """The weaker promise, kept: whatever a process caches of the catalog (a service's
    rules, its experts' hours) is at most ``CATALOG_TTL`` old, so B's answers carry A's
    change once that much time has passed -- every one of them. (The next test: at
    once.)"""
    service, (expert,) = a.catalog(experts=1)
    for _ in range(ASKS):  # warm B's workers
        assert _durations(b, service, expert) == {30}

    a.admin("PATCH", f"/services/{service}", {"duration_minutes": 60})
    time.sleep(CATALOG_TTL + 0.2)
    assert [_durations(b, service, expert) for _ in range(ASKS)] == [{60}] * ASKS

    a.admin("PUT", f"/experts/{expert}/schedule", {"weekly": WEEKLY_9_TO_11, "overrides": []})
    time.sleep(CATALOG_TTL + 0.2)
    for n in range(ASKS):
        hours = _hours(b, service, expert)
        assert hours <= {9, 10}, f"B's answer {n + 1} after new hours through A: {hours}"


def test_an_admin_change_through_one_instance_is_in_the_others_very_next_answer(
        a: Deployment, b: Deployment) -> None:
    service, (expert,) = a.catalog(experts=1)
    time.sleep(CATALOG_TTL)  # nothing of this service is cached yet; to be sure
    filled = time.monotonic()  # B's workers cache the catalog from here on
    for _ in range(ASKS):
        assert _durations(b, service, expert) == {30}
    a.admin("PATCH", f"/services/{service}", {"duration_minutes": 60})
    asked = time.monotonic()
    after = [_durations(b, service, expert) for _ in range(ASKS)]
    if after == [{60}] * ASKS and asked > filled + CATALOG_TTL:
        pytest.xfail("inconclusive: the change was made after B's cache entries aged out")
    assert after == [{60}] * ASKS, \
        "B's answers right after a change of duration through A (30 -> 60 minutes)"


def _minutes(slot: dict[str, Any]) -> float:
    start = datetime.fromisoformat(slot["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(slot["end"].replace("Z", "+00:00"))
    return (end - start) / timedelta(minutes=1)
