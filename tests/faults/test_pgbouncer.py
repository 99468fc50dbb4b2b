"""Behind PgBouncer in transaction pooling, everything works: nothing depends on session
state (docs/operations.md, "PgBouncer").

Two gunicorn workers and the embedded worker on a PgBouncer with a pool smaller than
their connections, so that consecutive transactions of one app connection land on
different server connections. Each query runs many more than five times -- psycopg's
threshold for preparing a statement on the server, which is what breaks transaction
pooling ("prepared statement ... does not exist") unless the app turns it off, as
engine/store/db.py does. Holds (with their transaction-scoped advisory lock), webhooks,
availability and admin reads all answer as they would on a direct connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.topology import Deployment, OwnPostgres, PgBouncer, paid_order

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def deployment(own_postgres: OwnPostgres) -> Iterator[Deployment]:
    pg = own_postgres
    bouncer = None
    deploy = None
    try:
        bouncer = PgBouncer(pg, pool_size=3)
        deploy = Deployment(bouncer.url, direct_url=pg.url)
        deploy.serve(workers=2)
        yield deploy
    finally:
        if deploy is not None:
            deploy.close()
        if bouncer is not None:
            bouncer.stop()


def test_the_whole_flow_behind_transaction_pooling(deployment: Deployment) -> None:
    service, (expert,) = deployment.catalog(experts=1)
    status, doc = deployment.availability(service, days=2)
    assert status == 200, doc
    starts = [s["start"] for s in doc["slots"]][:40]
    assert len(starts) == 40

    def one(i: int) -> list[int]:
        codes = [deployment.availability(service, days=1)[0]]
        held, body = deployment.hold(service, expert, starts[i], f"cust{i}")
        codes.append(held)
        if held == 201:
            codes.append(deployment.webhook("orders/paid", paid_order(5000 + i, body["hold"]),
                                            f"wh-{i}")[0])
        codes.append(deployment.request("GET", "/readyz")[0])
        return codes

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    # Every request of every kind answered as on a direct connection.
    assert all(codes == [200, 201, 200, 200] for codes in results), results
    # A second round on the same connections: well past the prepare threshold.
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: deployment.availability(service, days=1)[0],
                              range(200)))
    assert set(codes) == {200}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        booked = deployment.sql("SELECT count(*) FROM claims WHERE status = 'confirmed'")
        if booked[0][0] == 40:
            break
        time.sleep(0.2)
    assert booked[0][0] == 40
    bookings = deployment.admin("GET", "/bookings")["bookings"]
    assert len(bookings) == 40 and len({b["start"] for b in bookings}) == 40
    assert "prepared statement" not in deployment.log("serve")
