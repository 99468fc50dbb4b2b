"""A delivery whose worker died is taken over within a lease, still exactly once.

The outbox lease is short and renewed by a heartbeat while the work runs
(engine/services/outbox.py): a slow step keeps its row, a worker that lost its lease
stops before its next step, and a dead worker's row goes to the next relay once the
lease has run out. The last test kills a real Celery worker (the whole process group,
so Redis would only hand its message out again after the visibility timeout) in the
middle of the calendar call and watches another worker finish the booking.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import select, update

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock, SystemClock
from engine.providers import Grant
from engine.services import outbox
from engine.services.connections import store_connection
from engine.services.shops import ShopRef, install_shop
from engine.store.models import OutboxItem, OutboxStep
from engine.tasks import jobs
from plugins.calendar_local.models import LocalCalendarEvent
from tests.conftest import NOW, Admin, Storefront, make_config
from tests.tasks.helpers import (
    MAIL,
    FakeVideo,
    book,
    free_port,
    future_slot,
    process_env,
    set_providers,
    stop_process,
    wait_for,
)
from tests.tasks.test_celery import Inbox, SlowGoogle, live_db_url  # noqa: F401 (fixture)
from web.app import create_app


class MovingClock(FixedClock):
    """Starts at the suite's NOW and moves with real time (leases must run out)."""

    def __init__(self, at: datetime) -> None:
        super().__init__(at)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=time.monotonic() - self._t0)


@pytest.fixture
def clock() -> FixedClock:
    return MovingClock(NOW)


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {"outbox_lease_seconds": 1}


def booking_rows(ctx: Context) -> list[OutboxItem]:
    with ctx.db.read() as session:
        return list(session.scalars(select(OutboxItem).where(OutboxItem.kind.like("booking.%"))
                                    .order_by(OutboxItem.id)))


def locked_until(ctx: Context, item_id: int) -> datetime | None:
    with ctx.db.read() as session:
        return session.scalar(select(OutboxItem.locked_until).where(OutboxItem.id == item_id))


@pytest.fixture
def slow_meeting(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """(entered, gate): the test video provider's create_meeting blocks until ``gate``."""
    entered, gate = threading.Event(), threading.Event()
    original = FakeVideo.create_meeting

    def slow(self: FakeVideo, booking: Any) -> Any:
        entered.set()
        assert gate.wait(20), "the test never opened the gate"
        return original(self, booking)

    monkeypatch.setattr(FakeVideo, "create_meeting", slow)
    return entered, gate


def deliver_in_thread(ctx: Context, item_id: int, owner: str) -> tuple[threading.Thread,
                                                                       list[outbox.Outcome]]:
    out: list[outbox.Outcome] = []
    thread = threading.Thread(target=lambda: out.append(
        outbox.deliver(ctx.db, ctx.clock, ctx.plugins, item_id, owner)), daemon=True)
    thread.start()
    return thread, out


def test_a_slow_step_keeps_its_lease_and_nobody_takes_the_row(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        slow_meeting: tuple[threading.Event, threading.Event]) -> None:
    entered, gate = slow_meeting
    set_providers(ctx, shop, video="testvideo", mail="recording")
    book(admin, store)
    (item,) = booking_rows(ctx)
    thread, out = deliver_in_thread(ctx, item.id, "worker-a")
    assert entered.wait(10)
    first = locked_until(ctx, item.id)
    # Three leases long, the step runs; the heartbeat keeps the row, nobody else gets it.
    deadline = time.monotonic() + 3 * ctx.config.outbox_lease_seconds
    while time.monotonic() < deadline:
        assert not outbox.claim(ctx.db, item.id, "worker-b", ctx.clock.now(), 1)
        assert item.id not in outbox.due_ids(ctx.db, ctx.clock.now())
        time.sleep(0.1)
    renewed = locked_until(ctx, item.id)
    assert first is not None and renewed is not None and renewed > first
    gate.set()
    thread.join(20)
    assert [o.status for o in out] == ["done"]
    assert len(MAIL.to("jon@example.com")) == 1 and len(MAIL.to("e0@example.com")) == 1
    (row,) = booking_rows(ctx)
    assert row.status == "done" and row.attempts == 1


def test_a_worker_that_lost_its_lease_stops_before_its_next_step(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        slow_meeting: tuple[threading.Event, threading.Event]) -> None:
    entered, gate = slow_meeting
    set_providers(ctx, shop, video="testvideo", mail="recording")
    booking = book(admin, store)
    (item,) = booking_rows(ctx)
    thread, out = deliver_in_thread(ctx, item.id, "worker-a")
    assert entered.wait(10)
    # Another worker took the row over (as after a lease that ran out): it holds it for
    # a short while, then dies too.
    with ctx.db.write() as session:
        session.execute(update(OutboxItem).where(OutboxItem.id == item.id).values(
            lease_owner="worker-b", locked_until=ctx.clock.now() + timedelta(seconds=1.5)))
    time.sleep(0.8)  # two heartbeats: the first renewal finds the row gone
    gate.set()
    thread.join(20)
    assert [o.status for o in out] == ["lost"]
    # worker-a stopped before the calendar event and the mails.
    assert MAIL.sent == []
    with ctx.db.read() as session:
        assert session.get(LocalCalendarEvent, booking) is None
    # The row is still worker-b's; once its lease runs out the relay finishes it, once.
    assert jobs.relay_outbox(jobs.Deps(ctx.config, ctx.db, ctx.clock, ctx.plugins),
                             "relay").outcomes == []
    wait_for(lambda: [o.status for o in jobs.relay_outbox(
        jobs.Deps(ctx.config, ctx.db, ctx.clock, ctx.plugins), "relay").outcomes] == ["done"],
        timeout=10, interval=0.2, message="the takeover")
    assert len(MAIL.to("jon@example.com")) == 1 and len(MAIL.to("e0@example.com")) == 1
    with ctx.db.read() as session:
        event = session.get(LocalCalendarEvent, booking)
        assert event is not None and event.status == "confirmed"


def test_a_dead_workers_row_goes_to_the_next_relay_after_one_lease(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef) -> None:
    set_providers(ctx, shop, mail="recording")
    book(admin, store)
    (item,) = booking_rows(ctx)
    deps = jobs.Deps(ctx.config, ctx.db, ctx.clock, ctx.plugins)
    # A worker claimed the row and died at once: no heartbeat renews its lease.
    assert outbox.claim(ctx.db, item.id, "dead-worker", ctx.clock.now(), 1)
    died = time.monotonic()
    assert jobs.relay_outbox(deps, "relay").outcomes == []
    wait_for(lambda: [o.status for o in jobs.relay_outbox(deps, "relay").outcomes] == ["done"],
             timeout=10, interval=0.05, message="the takeover")
    waited = time.monotonic() - died
    assert 0.9 <= waited < 3.0, waited
    assert len(MAIL.to("jon@example.com")) == 1 and len(MAIL.to("e0@example.com")) == 1


def test_a_long_send_under_a_live_lease_is_not_declared_in_doubt(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef) -> None:
    set_providers(ctx, shop, mail="recording")
    book(admin, store)
    (item,) = booking_rows(ctx)
    now = ctx.clock.now()
    assert outbox.claim(ctx.db, item.id, "live-worker", now, 30)
    with ctx.db.write() as session:
        session.add(OutboxStep(outbox_id=item.id, step="customer_mail", status="sending",
                               created_at=now - timedelta(seconds=5),
                               updated_at=now - timedelta(seconds=5)))
    # Older than a lease, but its worker still renews the row: it is still sending.
    assert outbox.recover_stuck_steps(ctx.db, now, 1) == 0
    # The worker died: once its lease is gone the step is in doubt (never sent again).
    assert outbox.recover_stuck_steps(ctx.db, now + timedelta(seconds=31), 1) == 1


@pytest.mark.parametrize("lease, relay_every, beat_every", [
    (30, 10.0, 10.0), (300, 10.0, 100.0), (6, 2.0, 2.0), (1, 0.5, 1 / 3)])
def test_the_relay_scans_and_the_heartbeat_beat_within_a_lease(
        lease: int, relay_every: float, beat_every: float) -> None:
    assert outbox.relay_interval(lease) == pytest.approx(relay_every)
    assert outbox.heartbeat_interval(lease) == pytest.approx(beat_every)
    config = make_config("sqlite://", outbox_lease_seconds=lease)
    assert jobs.schedule(config)["relay_outbox"] == pytest.approx(relay_every)


# --------------------------------------------------------------------------- Celery


def start_worker(args: list[str], env: dict[str, str], log: Path, cwd: Path
                 ) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "engine.cli", *args], env=env, cwd=cwd,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def celery_stack(live_db_url: str, redis_url: str, tmp_path: Path  # noqa: F811
                 ) -> Iterator[dict[str, Any]]:
    from aiosmtpd.controller import Controller

    inbox = Inbox([])
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    google = SlowGoogle().start()
    assert isinstance(google, SlowGoogle)
    smtp_url = f"smtp://127.0.0.1:{smtp_port}?starttls=false&from=bookings@example.com"
    env = process_env(live_db_url, **{
        "CONSULTBOOK_BROKER_URL": redis_url, "CONSULTBOOK_SMTP_URL": smtp_url,
        "CONSULTBOOK_GOOGLE_API_ORIGIN": google.url,
        "CONSULTBOOK_GOOGLE_TOKEN_URL": f"{google.url}/token",
        "CONSULTBOOK_MEET_API_ORIGIN": google.url,
        "CONSULTBOOK_GOOGLE_CLIENT_ID": google.client_id,
        "CONSULTBOOK_GOOGLE_CLIENT_SECRET": google.client_secret,
        "CONSULTBOOK_PROVIDER_ATTEMPTS": "2",
        "CONSULTBOOK_PROVIDER_BACKOFF_SECONDS": "0.01",
        "CONSULTBOOK_PROVIDER_TIMEOUT_SECONDS": "30",
        # What production runs: Redis hands an unacknowledged message out again only
        # after an hour. The takeover must come from the lease, not from Redis.
        "CONSULTBOOK_BROKER_VISIBILITY_TIMEOUT": "3600",
        # Short for the test (production: 30 s): heartbeat and relay every 2 s.
        "CONSULTBOOK_OUTBOX_LEASE_SECONDS": "6",
        "CONSULTBOOK_OUTBOX_DIR": str(tmp_path / "outbox")})
    config = make_config(live_db_url, broker_url=redis_url, smtp_url=smtp_url,
                         origins=google.origins(), google_client_id=google.client_id,
                         google_client_secret=google.client_secret,
                         outbox_dir=str(tmp_path / "outbox"))
    ctx = bootstrap(config, clock=SystemClock())
    # No Shopify token: the booking's only outbox row is the confirmation.
    shop = install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com", "Europe/Berlin")
    store_connection(ctx.plugins, shop, "google", Grant(
        account="owner@example.com",
        credentials={"refresh_token": google.issue_refresh_token()}))
    set_providers(ctx, shop, calendar="google", video="meet", mail="smtp")
    google.busy["e0@example.com"] = []
    client = falcon.testing.TestClient(create_app(ctx))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield {"ctx": ctx, "google": google, "inbox": inbox, "env": env, "procs": procs,
               "admin": Admin(client, ctx, shop.domain),
               "store": Storefront(client, ctx, shop.domain), "tmp": tmp_path}
    finally:
        for proc in procs:
            stop_process(proc)
        google.stop()
        controller.stop()
        cache = getattr(ctx.busy_source, "cache", None)
        if hasattr(cache, "close"):
            cache.close()
        ctx.db.dispose()


def wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    wait_for(lambda: b"ready." in log.read_bytes() or proc.poll() is not None, timeout=60,
             message="the worker to start")
    assert proc.poll() is None, log.read_text()


@pytest.mark.redis
@pytest.mark.slow
def test_kill_9_of_the_whole_worker_mid_calendar_call_is_taken_over_within_a_minute(
        celery_stack: dict[str, Any]) -> None:
    s = celery_stack
    ctx, google, inbox, tmp = s["ctx"], s["google"], s["inbox"], s["tmp"]
    log_a = tmp / "worker-a.log"
    worker_a = start_worker(["worker", "--concurrency", "1"], s["env"], log_a, tmp)
    s["procs"].append(worker_a)
    wait_ready(worker_a, log_a)

    google.stall_next_insert = True
    book(s["admin"], s["store"], start=future_slot(ctx.clock.now()))
    wait_for(google.stalled.is_set, timeout=30, message="the event insert")
    # kill -9 of the worker, parent and child: nobody acknowledges or rejects the message.
    os.killpg(worker_a.pid, signal.SIGKILL)
    worker_a.wait(10)
    killed = time.monotonic()

    # Another worker (with the scheduler) comes up; the relay finds the row once its
    # lease has run out and delivers it.
    log_b = tmp / "worker-b.log"
    worker_b = start_worker(["worker", "--concurrency", "1", "--beat"], s["env"], log_b, tmp)
    s["procs"].append(worker_b)
    wait_ready(worker_b, log_b)
    wait_for(lambda: len(inbox.messages) >= 2, timeout=60, message="the takeover")
    taken_over = time.monotonic() - killed
    assert taken_over < 60, taken_over
    time.sleep(2.5)  # a relay tick or two later: anything duplicated would be here

    assert len(inbox.to("jon@example.com")) == 1
    assert len(inbox.to("e0@example.com")) == 1
    assert len(google.live_events()) == 1  # the retried insert found the first event
    (row,) = booking_rows(ctx)
    assert row.status == "done" and row.attempts == 2
    assert row.lease_owner is None
