"""The embedded mode (no broker): the same jobs on the same schedule inside the web
process -- in a thread here, and under `consultbook serve` with two gunicorn workers,
where mail lands in the outbox folder exactly once."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
import requests

from engine import embedded
from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock, SystemClock
from engine.embedded import EmbeddedWorker
from engine.services.shops import install_shop
from engine.shopify import webhook_hmac
from tests.conftest import API_SECRET, Admin, Storefront, make_catalog, make_config, order_payload
from tests.tasks.helpers import (
    EXTRA,
    book,
    eml_files,
    free_port,
    future_slot,
    process_env,
    start_cli,
    stop_process,
    wait_for,
)
from web.app import create_app


@pytest.fixture
def worker(ctx: Context, clock: FixedClock) -> Iterator[EmbeddedWorker]:
    w = EmbeddedWorker(ctx.config, clock=clock, extra_plugins=EXTRA).start()
    ctx.after_commit = w.wake
    yield w
    w.stop()


def test_the_embedded_worker_relays_after_commit(
        ctx: Context, worker: EmbeddedWorker, admin: Admin, store: Storefront,
        outbox_dir: Path) -> None:
    assert ctx.config.broker_url is None
    book(admin, store)
    wait_for(lambda: len(eml_files(outbox_dir)) >= 2, timeout=15, message="the mails")
    time.sleep(0.3)
    assert sorted(str(m["To"]) for m in eml_files(outbox_dir)) == [
        "e0@example.com", "jon@example.com"]
    assert worker.runs["relay_outbox"] >= 1


def test_the_embedded_worker_runs_the_periodic_jobs(
        ctx: Context, clock: FixedClock) -> None:
    w = EmbeddedWorker(ctx.config, clock=clock, extra_plugins=EXTRA,
                       intervals={"relay_outbox": 0.05, "send_reminders": 0.05,
                                  "sweep": 0.05, "refresh_freebusy": 0.05}).start()
    try:
        wait_for(lambda: all(n >= 2 for n in w.runs.values()), timeout=15,
                 message="every job twice")
    finally:
        w.stop()
    assert not w.alive


def test_wake_reaches_the_process_worker_only_when_one_runs(db_url: str) -> None:
    embedded.wake()  # none running: nothing happens
    config = make_config(db_url)
    w = embedded.start(config)
    try:
        assert embedded.start(config) is w  # one per process
        embedded.wake()
    finally:
        embedded.stop()
    assert not w.alive


@pytest.mark.slow
def test_serve_without_a_broker_sends_each_mail_once(
        tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "serve.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    outbox = tmp_path / "outbox"
    # Set the shop up in-process (same database file, real clock)...
    ctx = bootstrap(make_config(url, outbox_dir=str(outbox)), clock=SystemClock())
    shop = install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com",
                        "Europe/Berlin", access_token="shpat_alpha")
    client = falcon.testing.TestClient(create_app(ctx))
    admin, store = Admin(client, ctx, shop.domain), Storefront(client, ctx, shop.domain)
    catalog = make_catalog(admin)
    r = store.hold(catalog["service"], catalog["expert"], future_slot(ctx.clock.now()))
    assert r.status_code == 201, r.text
    hold = r.json["hold"]
    ctx.db.dispose()

    # ...then let Shopify's webhook reach `consultbook serve` over HTTP.
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_cli(["serve", "--port", str(port), "--workers", "2"],
                     process_env(url, CONSULTBOOK_OUTBOX_DIR=str(outbox)), log)
    try:
        wait_for(lambda: _up(port) or proc.poll() is not None, timeout=60,
                 message="serve to answer")
        assert proc.poll() is None, log.read_text()
        body = requests.compat.json.dumps(order_payload(4242, [hold])).encode()
        r = requests.post(f"http://127.0.0.1:{port}/webhooks", data=body, timeout=10,
                          headers={"X-Shopify-Topic": "orders/paid",
                                   "X-Shopify-Shop-Domain": shop.domain,
                                   "X-Shopify-Hmac-Sha256": webhook_hmac(body, API_SECRET),
                                   "X-Shopify-Webhook-Id": "wh-serve-1",
                                   "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        wait_for(lambda: len(eml_files(outbox)) >= 2, timeout=30, message="the mails")
        time.sleep(2)  # both gunicorn workers run a relay: nothing may come twice
        assert sorted(str(m["To"]) for m in eml_files(outbox)) == [
            "e0@example.com", "jon@example.com"]
    finally:
        stop_process(proc)


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
