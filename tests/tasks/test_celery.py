"""A real `consultbook worker` (Celery, prefork) on real Redis: a booking reaches the
(fake) Google calendar and the (aiosmtpd) inbox exactly once -- also when the worker
child is killed with SIGKILL in the middle of the calendar call."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from engine.bootstrap import Context, bootstrap
from engine.clock import SystemClock
from engine.providers import Grant
from engine.services.connections import store_connection
from engine.services.shops import ShopRef, install_shop
from engine.store.models import OutboxItem
from engine.tasks import QUEUE, celery_settings
from tests.conftest import POSTGRES_URL, Admin, Storefront, _truncate, make_config
from tests.fakes.google import FakeGoogle
from tests.fakes.http import Request, Response
from tests.tasks.helpers import (
    book,
    children,
    claim_row,
    free_port,
    future_slot,
    process_env,
    set_providers,
    start_cli,
    stop_process,
    wait_for,
)
from web.app import create_app

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class SlowGoogle(FakeGoogle):
    """Google that, once, makes the event and then takes its time to answer."""

    def __init__(self) -> None:
        super().__init__()
        self.stall_next_insert = False
        self.stalled = threading.Event()

    def route(self, r: Request) -> Response:
        response = super().route(r)
        if self.stall_next_insert and r.method == "POST" and r.path.endswith("/events"):
            self.stall_next_insert = False
            self.stalled.set()
            time.sleep(6)  # the worker child dies while it waits for this answer
        return response


@dataclass
class Inbox:
    messages: list[Any]

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"

    def to(self, address: str) -> list[Any]:
        return [m for m in self.messages if address in m.rcpt_tos]


@dataclass
class Stack:
    ctx: Context
    google: SlowGoogle
    inbox: Inbox
    worker: Any
    admin: Admin
    store: Storefront
    shop: ShopRef
    log: Path


@pytest.fixture
def live_db_url(tmp_path: Path, sqlite_template: Path, request: pytest.FixtureRequest) -> str:
    """PostgreSQL when configured (what production runs), else a SQLite file."""
    if POSTGRES_URL:
        url: str = request.getfixturevalue("postgres_database")
        _truncate(url)
        return url
    import shutil

    path = tmp_path / "live.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def stack(live_db_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    inbox = Inbox([])
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    google = SlowGoogle().start()
    assert isinstance(google, SlowGoogle)
    smtp_url = f"smtp://127.0.0.1:{smtp_port}?starttls=false&from=bookings@example.com"
    settings = {"CONSULTBOOK_BROKER_URL": redis_url, "CONSULTBOOK_SMTP_URL": smtp_url,
                "CONSULTBOOK_GOOGLE_API_ORIGIN": google.url,
                "CONSULTBOOK_GOOGLE_TOKEN_URL": f"{google.url}/token",
                "CONSULTBOOK_MEET_API_ORIGIN": google.url,
                "CONSULTBOOK_GOOGLE_CLIENT_ID": google.client_id,
                "CONSULTBOOK_GOOGLE_CLIENT_SECRET": google.client_secret,
                "CONSULTBOOK_PROVIDER_ATTEMPTS": "2",
                "CONSULTBOOK_PROVIDER_BACKOFF_SECONDS": "0.01",
                "CONSULTBOOK_PROVIDER_TIMEOUT_SECONDS": "20",
                "CONSULTBOOK_BROKER_VISIBILITY_TIMEOUT": "5",
                "CONSULTBOOK_OUTBOX_DIR": str(tmp_path / "outbox")}
    config = make_config(live_db_url, broker_url=redis_url, smtp_url=smtp_url,
                         origins=google.origins(), google_client_id=google.client_id,
                         google_client_secret=google.client_secret,
                         outbox_dir=str(tmp_path / "outbox"))
    ctx = bootstrap(config, clock=SystemClock())
    shop = install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com",
                        "Europe/Berlin", access_token="shpat_alpha")
    store_connection(ctx.plugins, shop, "google", Grant(
        account="owner@example.com",
        credentials={"refresh_token": google.issue_refresh_token()}))
    set_providers(ctx, shop, calendar="google", video="meet", mail="smtp")
    google.busy["e0@example.com"] = []  # the expert's calendar is readable and free
    client = falcon.testing.TestClient(create_app(ctx))
    log = tmp_path / "worker.log"
    worker = start_cli(["worker", "--concurrency", "1", "--loglevel", "info"],
                       process_env(live_db_url, **settings), log)
    try:
        wait_for(lambda: b"ready." in log.read_bytes() or worker.poll() is not None,
                 timeout=60, message="the worker to start")
        assert worker.poll() is None, log.read_text()
        yield Stack(ctx, google, inbox, worker, Admin(client, ctx, shop.domain),
                    Storefront(client, ctx, shop.domain), shop, log)
    finally:
        stop_process(worker)
        google.stop()
        controller.stop()
        cache = getattr(ctx.busy_source, "cache", None)
        if hasattr(cache, "close"):
            cache.close()
        ctx.db.dispose()


def outbox_rows(ctx: Context) -> list[OutboxItem]:
    """The booking's outbox rows (not the order tagging for Shopify, tested elsewhere)."""
    with ctx.db.read() as session:
        return list(session.scalars(select(OutboxItem)
                                    .where(OutboxItem.kind.like("booking.%"))
                                    .order_by(OutboxItem.id)))


def test_a_booking_reaches_the_calendar_and_the_inbox_once(stack: Stack) -> None:
    booking = book(stack.admin, stack.store, start=future_slot(stack.ctx.clock.now()))
    wait_for(lambda: len(stack.inbox.messages) >= 2, timeout=30,
             message="the confirmation mails")
    time.sleep(1.5)  # anything duplicated would show up by now

    assert len(stack.google.live_events()) == 1
    assert len(stack.google.calls("POST", r"/events$")) == 1
    (customer,) = stack.inbox.to("jon@example.com")
    assert len(stack.inbox.to("e0@example.com")) == 1
    body = customer.content.decode()
    assert "METHOD:REQUEST" in body and f"UID:{booking}@consultbook" in body
    # Meet made by Google inside the event: the link is in the invitation and the booking.
    meet = claim_row(stack.ctx, booking).meeting_url
    assert meet and meet.startswith("https://meet.google.com/")
    assert meet in body
    (row,) = outbox_rows(stack.ctx)
    assert row.status == "done" and row.attempts == 1


def test_kill_9_of_the_worker_child_mid_calendar_call_is_redelivered_once(
        stack: Stack) -> None:
    stack.google.stall_next_insert = True
    book(stack.admin, stack.store, start=future_slot(stack.ctx.clock.now()))
    wait_for(stack.google.stalled.is_set, timeout=30, message="the event insert")
    (child,) = children(stack.worker.pid)
    os.kill(child, signal.SIGKILL)

    wait_for(lambda: len(stack.inbox.messages) >= 2, timeout=40,
             message="the mails after redelivery")
    time.sleep(1.5)
    assert stack.worker.poll() is None  # the worker replaced its child
    assert child not in children(stack.worker.pid)
    # The retried insert hit Google's duplicate id (409) and took the existing event.
    assert len(stack.google.calls("POST", r"/events$")) == 2
    assert len(stack.google.live_events()) == 1
    assert len(stack.inbox.to("jon@example.com")) == 1
    assert len(stack.inbox.to("e0@example.com")) == 1
    (row,) = outbox_rows(stack.ctx)
    assert row.status == "done" and row.attempts == 2
    assert "WorkerLostError" in stack.log.read_text() or "SIGKILL" in stack.log.read_text()


def test_the_celery_settings_are_the_safe_ones() -> None:
    config = make_config("sqlite://", broker_url="redis://127.0.0.1:6379/0",
                         broker_visibility_timeout=1800)
    s = celery_settings(config)
    assert s["task_acks_late"] and s["task_reject_on_worker_lost"]
    assert s["worker_prefetch_multiplier"] == 1
    assert s["accept_content"] == ["json"] and s["task_serializer"] == "json"
    assert s["broker_transport_options"]["visibility_timeout"] == 1800
    beat = {k: v["schedule"].total_seconds() for k, v in s["beat_schedule"].items()}
    assert beat["send_reminders"] == 60
    # The relay is what takes over a dead worker's delivery once its lease ran out.
    assert beat["relay_outbox"] == 10
    short = celery_settings(make_config("sqlite://", broker_url="redis://127.0.0.1:6379/0",
                                        outbox_lease_seconds=6))
    assert short["beat_schedule"]["relay_outbox"]["schedule"].total_seconds() == 2
    # Shopify actions have a queue of their own; a worker consumes both.
    assert s["task_default_queue"] == "consultbook"
    assert s["task_routes"] == {"consultbook.deliver_shopify": {"queue": "consultbook.shopify"}}
    assert QUEUE.split(",") == ["consultbook", "consultbook.shopify"]
    assert beat["sweep"] == 60 and "refresh_freebusy" in beat
    assert beat["refresh_shopify_tokens"] == 300 and beat["plugin:local_ics_feeds"] == 900


def test_token_and_feed_refresh_jobs_run(sqlite_url: str) -> None:
    from engine.tasks import jobs

    deps = jobs.build_deps(make_config(sqlite_url))
    try:
        assert jobs.refresh_shopify_tokens(deps) == {"shops": 0}
        assert jobs.run_plugin_job(deps, "local_ics_feeds", "t") == {"feeds": 0}
    finally:
        deps.db.dispose()


def test_the_worker_needs_a_broker(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = process_env(f"sqlite:///{tmp_path}/x.db")
    for command in ("worker",):
        r = subprocess.run([sys.executable, "-m", "engine.cli", command], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        (line,) = r.stderr.strip().splitlines()
        assert "CONSULTBOOK_BROKER_URL" in line


def test_periodic_jobs_build_their_context_once_per_process(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job run builds no context (and so loads no plugins) after the first: the deps
    of the process are the context the use cases get (the tasks layer never imports
    the composition root)."""
    from engine import plugins as plugins_module
    from engine.services import providers as providers_module
    from engine.tasks import jobs

    loads: list[object] = []
    real = plugins_module.load_plugins

    def counting(*args: object, **kwargs: object) -> object:
        loads.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(providers_module, "load_plugins", counting)
    deps = jobs.build_deps(make_config(sqlite_url))
    try:
        for _ in range(3):
            assert jobs.refresh_shopify_tokens(deps) == {"shops": 0}
            jobs.run_plugin_job(deps, "local_ics_feeds", "t")
        assert len(loads) == 1
        assert deps.context() is deps
    finally:
        deps.db.dispose()
