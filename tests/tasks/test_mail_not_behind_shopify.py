"""Nothing the customer must hear waits on Shopify.

Order tagging and refunds (Shopify Admin API actions) are outbox rows of their own lane:
not in the chain that orders a booking's confirmation and cancellation, relayed by a
thread of their own in the embedded worker and a queue of their own under Celery, and
never slept on -- a failing call puts its row back with backoff. These tests point the
Admin API at a closed port, at a server answering 503, and at one that never answers,
confirm 20 bookings, and require every confirmation mail within seconds while the
tagging rows wait for their retry.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import falcon.testing
import pytest
from sqlalchemy import select

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock, SystemClock
from engine.embedded import EmbeddedWorker
from engine.services import outbox
from engine.services.shops import ShopRef, install_shop
from engine.shopify import admin_api
from engine.store.models import OutboxItem
from engine.tasks import jobs
from tests.conftest import Admin, Storefront, make_catalog, make_config, order_payload
from tests.tasks.helpers import (
    EXTRA,
    MAIL,
    eml_files,
    free_port,
    process_env,
    set_providers,
    start_cli,
    stop_process,
    wait_for,
)
from web.app import create_app

BERLIN = ZoneInfo("Europe/Berlin")


class FakeAdminApi:
    """A Shopify Admin API that is down: ``503`` answers every request, ``hang`` accepts
    and never answers (until stopped), ``closed`` is a port nobody listens on."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        if mode == "closed":
            self.origin = f"http://127.0.0.1:{free_port()}"
            return
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with fake.lock:
                    fake.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if fake.mode == "hang":
                    fake.release.wait(60)
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(params=["closed", "503", "hang"])
def shopify(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[FakeAdminApi]:
    # A hanging call is given up after 1.5 s here (production: WORKER_TIMEOUT, 10 s).
    monkeypatch.setattr(admin_api, "WORKER_TIMEOUT", (1.0, 1.5))
    fake = FakeAdminApi(request.param)
    yield fake
    fake.stop()


@pytest.fixture
def overrides(shopify: FakeAdminApi) -> dict[str, Any]:
    return {"origins": {"shopify_admin": shopify.origin}, "outbox_retry_seconds": 30.0}


@pytest.fixture
def shop(ctx: Context) -> ShopRef:
    """A shop with a Shopify token: every booked order gets an ``order.tag`` row."""
    return install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com",
                        "Europe/Berlin", access_token="shpat_alpha")


def slots(first_day: datetime, count: int) -> list[str]:
    """``count`` half-hour starts from 09:00 Berlin, ten a day, on weekdays."""
    out: list[str] = []
    day = first_day.astimezone(BERLIN).date()
    while len(out) < count:
        if day.weekday() < 5:
            for k in range(min(10, count - len(out))):
                start = datetime(day.year, day.month, day.day, 9, 0, tzinfo=BERLIN) \
                    + timedelta(minutes=30 * k)
                out.append(start.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ"))
        day += timedelta(days=1)
    return out


def book_many(admin: Admin, store: Storefront, starts: list[str]) -> list[str]:
    catalog = make_catalog(admin)
    holds = []
    for n, start in enumerate(starts):
        r = store.hold(catalog["service"], catalog["expert"], start, ip=f"203.0.113.{n + 1}")
        assert r.status_code == 201, r.text
        holds.append(r.json["hold"])
    for n, hold in enumerate(holds):
        r = store.webhook("orders/paid", order_payload(5000 + n, [hold],
                                                       email=f"c{n}@example.com"))
        assert r.status_code == 200, r.text
    return holds


def rows(ctx: Context, kind: str) -> list[OutboxItem]:
    with ctx.db.read() as session:
        return list(session.scalars(select(OutboxItem).where(OutboxItem.kind == kind)
                                    .order_by(OutboxItem.id)))


# --------------------------------------------------------------------------- claiming


@pytest.mark.parametrize("shopify", ["503"], indirect=True)
def test_a_cancellation_never_waits_behind_the_bookings_shopify_call(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        shopify: FakeAdminApi, clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    (hold,) = book_many(admin, store, slots(clock.now() + timedelta(days=1), 1))
    (confirm,) = rows(ctx, "booking.confirmed")
    (tag,) = rows(ctx, "order.tag")
    now = clock.now()
    # The tag row is not behind the confirmation, and the confirmation not behind it.
    assert set(outbox.due_ids(ctx.db, now)) == {confirm.id, tag.id}
    assert outbox.due_ids(ctx.db, now, lane=outbox.SHOPIFY) == [tag.id]
    assert outbox.due_ids(ctx.db, now, lane=outbox.CUSTOMER) == [confirm.id]
    # Shopify is failing: the tag row is put back with backoff, for hours on end.
    deps = jobs.Deps(ctx.config, ctx.db, ctx.clock, ctx.plugins)
    (tagged,) = jobs.relay_outbox(deps, "w", lane=outbox.SHOPIFY).outcomes
    assert tagged.status == "retry" and tagged.retry_in is not None and tagged.retry_in >= 15
    assert shopify.requests == 1  # one call, no retries slept inside the worker
    outcomes = jobs.relay_outbox(deps, "w", lane=outbox.CUSTOMER).outcomes
    assert [(o.item_id, o.status) for o in outcomes] == [(confirm.id, "done")]
    # The customer cancels; the booking's tag row (earlier, still pending) is not in the
    # way: the cancellation is due at once and goes out.
    assert admin("POST", f"/bookings/{hold}/cancel").status_code == 200
    (cancel,) = rows(ctx, "booking.cancelled")
    assert cancel.id > tag.id
    assert outbox.due_ids(ctx.db, now, lane=outbox.CUSTOMER) == [cancel.id]
    outcomes = jobs.relay_outbox(deps, "w", lane=outbox.CUSTOMER).outcomes
    assert [(o.item_id, o.status) for o in outcomes] == [(cancel.id, "done")]
    assert [m.ics_method for m in MAIL.to("c0@example.com")] == ["REQUEST", "CANCEL"]
    (tag_row,) = rows(ctx, "order.tag")
    assert tag_row.status == "pending" and tag_row.available_at > now
    assert "Admin API" in (tag_row.last_error or "")


@pytest.mark.parametrize("shopify", ["503"], indirect=True)
def test_a_shops_failing_admin_api_holds_back_its_other_actions_not_its_mail(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        shopify: FakeAdminApi, clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    book_many(admin, store, slots(clock.now() + timedelta(days=1), 5))
    tags = rows(ctx, "order.tag")
    now = clock.now()
    # One Shopify action per shop at a time: the dispatcher offers only the first.
    assert outbox.due_ids(ctx.db, now, lane=outbox.SHOPIFY) == [tags[0].id]
    deps = jobs.Deps(ctx.config, ctx.db, ctx.clock, ctx.plugins)
    outcomes = jobs.relay_outbox(deps, "w", lane=outbox.SHOPIFY).outcomes
    # The first call failed; the other four would fail the same way and were put back
    # to the same time without being tried (and without an attempt counted).
    assert [o.status for o in outcomes] == ["retry"]
    assert shopify.requests == 1
    after = rows(ctx, "order.tag")
    assert [t.attempts for t in after] == [1, 0, 0, 0, 0]
    assert len({t.available_at for t in after}) == 1 and after[0].available_at > now
    assert outbox.due_ids(ctx.db, now, lane=outbox.SHOPIFY) == []
    # Mail is unaffected.
    assert len(jobs.relay_outbox(deps, "w", lane=outbox.CUSTOMER).outcomes) == 5
    assert len(MAIL.sent) == 10


@pytest.mark.parametrize("shopify", ["503"], indirect=True)
def test_a_throttled_call_is_rescheduled_no_sooner_than_shopify_asks(
        ctx: Context, shop: ShopRef, shopify: FakeAdminApi) -> None:
    """Inside no_waiting a wait the client wanted becomes the row's earliest retry."""
    with admin_api.no_waiting() as deferral, admin_api.AdminApi(
            shop.domain, "shpat_alpha", origin=shopify.origin,
            sleep=lambda s: pytest.fail("slept in a worker")) as api:
        with pytest.raises(admin_api.AdminApiDeferred) as info:
            api.tag_order("1", ["x"])
    assert info.value.retry_after == deferral.retry_after
    assert deferral.retry_after is not None and 0 < deferral.retry_after <= 1.0
    assert shopify.requests == 1
    # Outside no_waiting (the web process, the CLI) the client still retries in place.
    waits: list[float] = []
    with admin_api.AdminApi(shop.domain, "shpat_alpha", origin=shopify.origin,
                            max_attempts=3, sleep=waits.append) as api:
        with pytest.raises(admin_api.ShopifyUnavailable):
            api.tag_order("1", ["x"])
    assert len(waits) == 2 and shopify.requests == 4


# --------------------------------------------------------------------------- embedded


def test_the_embedded_worker_mails_every_confirmation_while_shopify_is_down(
        ctx: Context, admin: Admin, store: Storefront, shop: ShopRef,
        shopify: FakeAdminApi, clock: FixedClock) -> None:
    set_providers(ctx, shop, mail="recording")
    worker = EmbeddedWorker(ctx.config, clock=clock, extra_plugins=EXTRA).start()
    ctx.after_commit = worker.wake
    try:
        started = time.monotonic()
        book_many(admin, store, slots(clock.now() + timedelta(days=1), 20))
        booked = time.monotonic()
        wait_for(lambda: len(MAIL.sent) >= 40, timeout=15, message="40 confirmation mails")
        mailed = time.monotonic()
        # Every confirmation within seconds of its webhook (the booking loop itself takes
        # a while; none waited for a Shopify call). Mail in line behind the 20 hanging
        # tag calls (1.5 s each) would take 30 s; the bound leaves room for a loaded
        # machine (9.7 s once, with the suite on two xdist workers and more beside it)
        # and still refuses mail that waits behind half of them.
        assert mailed - booked < 15.0, (booked - started, mailed - booked)
        assert len({m.to[0] for m in MAIL.sent if m.to[0].startswith("c")}) == 20
        # (the row is marked done a moment after its last mail)
        wait_for(lambda: [c.status for c in rows(ctx, "booking.confirmed")] == ["done"] * 20,
                 timeout=5, message="the confirmations done")
        # The tag rows were rescheduled with backoff, not retried in place: each was
        # tried at most once (a failure also holds back the shop's other due rows).
        def settled() -> bool:
            now = clock.now()
            return all(t.status == "pending" and t.available_at >= now + timedelta(seconds=15)
                       and (t.locked_until is None or t.locked_until <= now)
                       for t in rows(ctx, "order.tag"))

        wait_for(settled, timeout=20, message="every tag row rescheduled")
        tags = rows(ctx, "order.tag")
        assert len(tags) == 20 and all(t.attempts <= 1 for t in tags)
        assert any(t.last_error for t in tags)
        if shopify.mode != "closed":
            assert shopify.requests == sum(t.attempts for t in tags)
    finally:
        shopify.release.set()
        worker.stop()


# --------------------------------------------------------------------------- Celery


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("shopify", ["503", "hang"], indirect=True)
def test_a_celery_worker_mails_every_confirmation_while_shopify_is_down(
        shopify: FakeAdminApi, redis_url: str, tmp_path: Path, sqlite_template: Path,
        request: pytest.FixtureRequest) -> None:
    from tests.conftest import POSTGRES_URL, _truncate

    if POSTGRES_URL:
        url: str = request.getfixturevalue("postgres_database")
        _truncate(url)
    else:
        shutil.copy(sqlite_template, tmp_path / "live.db")
        url = f"sqlite:///{tmp_path / 'live.db'}"
    mail_dir = tmp_path / "outbox"
    config = make_config(url, broker_url=redis_url, outbox_dir=str(mail_dir),
                         origins={"shopify_admin": shopify.origin})
    ctx = bootstrap(config, clock=SystemClock())
    shop = install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com",
                        "Europe/Berlin", access_token="shpat_alpha")
    client = falcon.testing.TestClient(create_app(ctx))
    admin, store = Admin(client, ctx, shop.domain), Storefront(client, ctx, shop.domain)
    env = process_env(url, CONSULTBOOK_BROKER_URL=redis_url,
                      CONSULTBOOK_OUTBOX_DIR=str(mail_dir),
                      CONSULTBOOK_SHOPIFY_ADMIN_ORIGIN=shopify.origin)
    log = tmp_path / "worker.log"
    worker = start_cli(["worker", "--concurrency", "2"], env, log)
    try:
        wait_for(lambda: b"ready." in log.read_bytes() or worker.poll() is not None,
                 timeout=60, message="the worker to start")
        assert worker.poll() is None, log.read_text()
        book_many(admin, store, slots(ctx.clock.now() + timedelta(days=2), 20))
        booked = time.monotonic()

        def customers() -> int:
            return sum(1 for m in eml_files(mail_dir) if str(m["To"]).startswith("c"))

        wait_for(lambda: customers() >= 20, timeout=60, interval=0.1,
                 message="20 confirmations")
        mailed = time.monotonic() - booked
        # Behind the tag calls, two worker processes would need 20 x 1.5 s / 2 = 15 s
        # (longer for "hang" with its retries); a loaded machine takes up to about 8 s.
        assert mailed < 12.0, mailed
        time.sleep(1.0)
        assert customers() == 20
        tags = rows(ctx, "order.tag")
        assert len(tags) == 20 and all(t.status == "pending" for t in tags)
        wait_for(lambda: any(t.last_error for t in rows(ctx, "order.tag")), timeout=20,
                 message="a failed tag attempt")
        tags = rows(ctx, "order.tag")
        now = ctx.clock.now()
        # Put back with backoff, not slept on: each row tried at most once, one request
        # per attempt (no retries inside the worker).
        assert all(t.available_at > now + timedelta(seconds=5) for t in tags if t.last_error)
        assert all(t.attempts <= 1 for t in tags)
        assert shopify.requests <= sum(t.attempts for t in tags)
        assert "waiting" not in log.read_text()  # the client's in-place retry never ran
    finally:
        shopify.release.set()
        stop_process(worker)
        ctx.db.dispose()


def test_shopify_rows_go_to_their_own_queue(tmp_path: Path) -> None:
    from engine.tasks import SHOPIFY_QUEUE, celery_settings

    s = celery_settings(make_config(f"sqlite:///{tmp_path}/x.db",
                                    broker_url="redis://127.0.0.1:6379/0"))
    assert s["task_routes"]["consultbook.deliver_shopify"]["queue"] == SHOPIFY_QUEUE
    assert s["task_default_queue"] != SHOPIFY_QUEUE
