"""The Celery worker ``kill -9``-ed every few seconds while 30 orders are booked.

A supervisor (systemd, Kubernetes) starts a new worker each time. The outbox relay takes
over what a dead worker left: its lease runs out and beat's relay gives the row to the
next worker; the outbox folder is an idempotent mailer, so a send killed half-way is
simply sent again. Afterwards every booking has exactly one customer confirmation, one
expert notification, one event in the local calendar, and one reminder row per
configured offset -- nothing lost, nothing twice.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import POSTGRES_URL
from tests.faults.topology import Deployment, OwnPostgres, OwnRedis, mails_to, paid_order

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

ORDERS = 30
KILL_EVERY = 3.0
# A short lease: a dead worker's delivery is taken over within lease + lease/3, so the
# test does not wait the 40 s of the defaults after each kill.
LEASE_SECONDS = 6


@pytest.fixture
def topology(own_postgres: OwnPostgres) -> Iterator[Deployment]:
    if not POSTGRES_URL:
        pytest.skip("CONSULTBOOK_TEST_POSTGRES_URL is not set")
    pg = own_postgres
    redis = OwnRedis()
    deploy = None
    try:
        deploy = Deployment(pg.url, broker_url=redis.url, extra_env={
            "CONSULTBOOK_OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS)})
        deploy.serve(workers=2)
        deploy.worker()
        deploy.start("beat", "beat")
        yield deploy
    finally:
        if deploy is not None:
            deploy.close()
        redis.stop()


def test_worker_killed_every_few_seconds_every_booking_gets_everything_once(
        topology: Deployment) -> None:
    deploy = topology
    service, (expert,) = deploy.catalog(experts=1)
    status, doc = deploy.availability(service)
    assert status == 200
    starts = [s["start"] for s in doc["slots"]][:ORDERS]
    assert len(starts) == ORDERS
    holds = []
    for i, start in enumerate(starts):
        code, body = deploy.hold(service, expert, start, f"cust{i}")
        assert code == 201, body
        holds.append(body["hold"])

    stop = threading.Event()
    kills: list[float] = []
    errors: list[BaseException] = []

    def supervisor() -> None:
        """Kill the worker's whole process group ~3 s after it became ready, then start a
        new one and wait for it (a worker takes ~3 s to boot: a kill every ~6 s)."""
        try:
            while not stop.wait(KILL_EVERY):
                deploy.stop("worker", signal.SIGKILL)
                kills.append(time.monotonic())
                deploy.worker()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    killer = threading.Thread(target=supervisor, daemon=True)
    killer.start()
    # The orders arrive over ~24 s, so several kills land among the deliveries.
    for i, hold in enumerate(holds):
        code, body = deploy.webhook("orders/paid", paid_order(9000 + i, hold), f"wh-{i}")
        assert code == 200, body
        time.sleep(0.8)
    time.sleep(KILL_EVERY)  # one more kill after the last order
    stop.set()
    killer.join(90)
    assert not killer.is_alive() and not errors, errors
    assert len(kills) >= 3, kills
    assert deploy.procs["worker"].poll() is None  # the last worker is left running

    def pending() -> list[object]:
        return deploy.sql("SELECT kind, status, attempts, last_error FROM outbox "
                          "WHERE status != 'done'")

    deadline = time.monotonic() + 60
    while pending():
        assert time.monotonic() < deadline, (pending(), deploy.log("worker")[-3000:],
                                             deploy.log("beat")[-2000:])
        time.sleep(0.5)
    time.sleep(2.0)  # a send still under way would show now: nothing arrives twice

    confirmed = deploy.sql("SELECT id, order_id FROM claims WHERE status = 'confirmed'")
    assert sorted(int(o) for _, o in confirmed) == [9000 + i for i in range(ORDERS)]
    bookings = {c for c, _ in confirmed}

    mails = mails_to(deploy.outbox)
    assert {f"c{9000 + i}@example.com": mails.get(f"c{9000 + i}@example.com")
            for i in range(ORDERS)} == {f"c{9000 + i}@example.com": 1 for i in range(ORDERS)}
    experts = {to: n for to, n in mails.items() if "expert0@example.com" in to}
    assert sum(experts.values()) in (0, ORDERS), experts  # notify_experts: once each
    assert sum(mails.values()) == ORDERS + sum(experts.values()), mails
    # No mail step is left in doubt: the idempotent mailer resent what a kill cut short.
    assert deploy.sql(
        "SELECT count(*) FROM outbox_steps WHERE status IN ('sending', 'unknown')") == [(0,)]

    events = deploy.sql("SELECT booking_id, status FROM local_calendar_events")
    assert sorted(b for b, _ in events) == sorted(bookings)
    assert len(events) == ORDERS

    offsets = deploy.sql("SELECT reminders FROM shop_settings")[0][0]
    assert offsets, "the shop has reminder offsets configured"
    reminders = deploy.sql("SELECT booking_id, offset_minutes, count(*) FROM reminders "
                           "GROUP BY booking_id, offset_minutes")
    assert all(n == 1 for _, _, n in reminders), reminders
    by_booking: dict[str, list[int]] = {}
    for booking, offset, _ in reminders:
        by_booking.setdefault(booking, []).append(int(offset))
    expected = sorted({int(o) for o in offsets})
    assert {b: sorted(o) for b, o in by_booking.items()} == {b: expected for b in bookings}
