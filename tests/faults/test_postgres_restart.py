"""PostgreSQL restarted under a stream of webhooks (with duplicates) and availability
requests, against two gunicorn workers and the embedded worker.

During the outage requests fail fast with 503 (never a 500, nothing waits past 10 s);
afterwards the pool recovers without restarting the server; and after Shopify-style
redelivery of every webhook (each delivery id again, as Shopify retries what did not get
a 200, plus a second id for the same order) the state is exactly one delivery's: one
confirmed booking and one confirmation mail per order, no refunds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.faults.topology import Deployment, OwnPostgres, mails_to, paid_order

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ORDERS = 30


@pytest.fixture
def topology(own_postgres: OwnPostgres) -> Iterator[tuple[OwnPostgres, Deployment]]:
    pg = own_postgres
    deploy = None
    try:
        # A short outbox lease: a mail whose "sent" record the outage swallowed is retried
        # (the outbox folder: exactly once) after the lease, not 30 s later.
        deploy = Deployment(pg.url, extra_env={"CONSULTBOOK_OUTBOX_LEASE_SECONDS": "6"})
        deploy.serve(workers=2)
        yield pg, deploy
    finally:
        if deploy is not None:
            deploy.close()


def test_restart_during_a_stream_then_redelivery_converges(
        topology: tuple[OwnPostgres, Deployment]) -> None:
    pg, deploy = topology
    service, (expert,) = deploy.catalog(experts=1)
    status, doc = deploy.availability(service)
    assert status == 200
    starts = [s["start"] for s in doc["slots"]][:ORDERS]
    holds = []
    for i, start in enumerate(starts):
        code, body = deploy.hold(service, expert, start, f"cust{i}")
        assert code == 201, body
        holds.append(body["hold"])

    results: list[tuple[str, int, float]] = []
    lock = threading.Lock()

    def timed(kind: str, call: Any) -> None:
        began = time.monotonic()
        try:
            code = call()[0]
        except OSError:
            code = -1  # the connection itself failed
        with lock:
            results.append((kind, code, time.monotonic() - began))

    def webhook(i: int, suffix: str) -> None:
        timed("webhook", lambda: deploy.webhook("orders/paid", paid_order(7000 + i, holds[i]),
                                                f"wh-{i}-{suffix}", timeout=15))

    def stream() -> None:
        with ThreadPoolExecutor(6) as pool:
            for i in range(ORDERS):
                pool.submit(webhook, i, "a")
                pool.submit(webhook, i, "a")  # a duplicate delivery
                pool.submit(timed, "availability",
                            lambda: deploy.availability(service, days=1, timeout=15))
                time.sleep(0.15)

    streamer = threading.Thread(target=stream)
    streamer.start()
    time.sleep(1.0)
    pg.stop()
    down_at = time.monotonic()
    time.sleep(2.0)
    # During the outage: fast 503s.
    for _ in range(3):
        began = time.monotonic()
        code, body = deploy.availability(service, days=1, timeout=15)
        assert code == 503 and body["error"]["code"] == "service_unavailable", body
        assert time.monotonic() - began < 10
    pg.start()
    streamer.join(120)
    assert not streamer.is_alive()
    assert time.monotonic() - down_at < 120

    codes = {code for _, code, _ in results}
    assert codes <= {200, 503}, sorted(results)
    assert max(t for _, _, t in results) < 10, max(results, key=lambda r: r[2])
    assert 503 in codes  # the outage was seen by the stream

    # The pool recovers without a restart of the server.
    deadline = time.monotonic() + 30
    while deploy.availability(service, days=1)[0] != 200:
        assert time.monotonic() < deadline, "the server did not recover"
        time.sleep(0.5)

    # Shopify redelivers: every delivery id again, and another id for each order.
    with ThreadPoolExecutor(6) as pool:
        for i in range(ORDERS):
            for suffix in ("a", "b"):
                pool.submit(webhook, i, suffix)
    final = [code for kind, code, _ in results[-2 * ORDERS:]]
    assert set(final) == {200}, final

    def settled() -> bool:
        rows = deploy.sql("SELECT count(*) FROM outbox WHERE status != 'done'")
        return rows[0][0] == 0

    deadline = time.monotonic() + 90
    while not settled():
        assert time.monotonic() < deadline, deploy.sql(
            "SELECT kind, status, last_error FROM outbox WHERE status != 'done'")
        time.sleep(0.5)
    confirmed = deploy.sql("SELECT order_id, count(*) FROM claims WHERE status = 'confirmed' "
                           "GROUP BY order_id")
    assert sorted(int(o) for o, n in confirmed if n == 1) == [7000 + i for i in range(ORDERS)]
    assert deploy.sql("SELECT count(*) FROM refunds")[0][0] == 0
    mails = mails_to(deploy.outbox)
    assert all(mails.get(f"c{7000 + i}@example.com") == 1 for i in range(ORDERS)), mails
