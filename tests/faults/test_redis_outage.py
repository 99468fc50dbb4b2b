"""Redis (the Celery broker) stopped while webhooks arrive.

Shopify gives a webhook 5 seconds: each still answers 200 well within them (the booking
is the database's; telling the worker is best-effort). When Redis is back, the worker and
beat deliver everything that was recorded meanwhile, each message once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import POSTGRES_URL
from tests.faults.topology import Deployment, OwnPostgres, OwnRedis, mails_to, paid_order

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

ORDERS = 10


@pytest.fixture
def topology(own_postgres: OwnPostgres) -> Iterator[tuple[OwnRedis, Deployment]]:
    if not POSTGRES_URL:
        pytest.skip("CONSULTBOOK_TEST_POSTGRES_URL is not set")
    pg = own_postgres
    redis = OwnRedis()
    deploy = None
    try:
        deploy = Deployment(pg.url, broker_url=redis.url)
        deploy.serve(workers=2)
        deploy.worker()
        deploy.start("beat", "beat")
        yield redis, deploy
    finally:
        if deploy is not None:
            deploy.close()
        redis.stop()


def test_webhooks_answer_while_redis_is_down_and_are_delivered_once_after(
        topology: tuple[OwnRedis, Deployment]) -> None:
    redis, deploy = topology
    service, (expert,) = deploy.catalog(experts=1)
    status, doc = deploy.availability(service)
    assert status == 200
    starts = [s["start"] for s in doc["slots"]][:ORDERS + 1]
    holds = []
    for i, start in enumerate(starts):
        code, body = deploy.hold(service, expert, start, f"cust{i}")
        assert code == 201, body
        holds.append(body["hold"])
    # One booking while everything is up: the worker delivers it.
    assert deploy.webhook("orders/paid", paid_order(8100, holds[-1]), "wh-up")[0] == 200
    deadline = time.monotonic() + 30
    while mails_to(deploy.outbox).get("c8100@example.com") != 1:
        assert time.monotonic() < deadline, deploy.log("worker")[-3000:]
        time.sleep(0.2)

    redis.stop()
    for i in range(ORDERS):
        began = time.monotonic()
        code, body = deploy.webhook("orders/paid", paid_order(8000 + i, holds[i]), f"wh-{i}")
        took = time.monotonic() - began
        assert code == 200, body
        assert took < 5.0, f"webhook {i} took {took:.1f} s with Redis down"
    assert deploy.sql("SELECT count(*) FROM claims WHERE status = 'confirmed'")[0][0] == \
        ORDERS + 1
    time.sleep(2.0)
    redis.start()

    def delivered() -> bool:
        mails = mails_to(deploy.outbox)
        return all(mails.get(f"c{8000 + i}@example.com") == 1 for i in range(ORDERS))

    deadline = time.monotonic() + 90
    while not delivered():
        assert time.monotonic() < deadline, (mails_to(deploy.outbox),
                                             deploy.log("worker")[-3000:],
                                             deploy.log("beat")[-2000:])
        time.sleep(0.5)
    time.sleep(3.0)  # nothing more arrives: each message once
    mails = mails_to(deploy.outbox)
    assert all(mails.get(f"c{8000 + i}@example.com") == 1 for i in range(ORDERS)), mails
    assert mails.get("c8100@example.com") == 1
