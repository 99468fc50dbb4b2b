"""``GET /metrics``: the bearer token, the instruments, the scrape-time gauges, and the
multiprocess mode under ``consultbook serve`` with two gunicorn workers.

The app is ``create_app(ctx)`` plus ``web.observability.install(app, ctx)`` (what
create_app will call itself). Counters are process-global, so the tests compare a
scrape before and after.
"""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.providers.errors import ProviderUnavailable
from engine.services.shops import ShopRef
from engine.store.models import OutboxItem
from engine.store.providers_models import FreeBusyHealth
from tests.conftest import Admin, Storefront, make_catalog, make_config, order_payload
from web import observability
from web.app import create_app

TOKEN = "metrics-" + uuid.uuid4().hex
SLOT = "2026-12-01T09:00:00Z"  # Tuesday 10:00 Berlin, the day after NOW
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def ctx(db_url: str, clock: FixedClock) -> Iterator[Context]:
    context = bootstrap(make_config(db_url, metrics_token=TOKEN), clock=clock)
    yield context
    context.db.dispose()


@pytest.fixture
def client(ctx: Context) -> falcon.testing.TestClient:
    app = create_app(ctx)
    observability.install(app, ctx)
    return falcon.testing.TestClient(app)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: falcon.testing.TestClient) -> Samples:
    r = client.simulate_get("/metrics", headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# --------------------------------------------------------------------------- the token


def test_without_a_token_configured_metrics_is_not_there(db_url: str,
                                                         clock: FixedClock) -> None:
    context = bootstrap(make_config(db_url), clock=clock)
    try:
        app = create_app(context)
        observability.install(app, context)
        c = falcon.testing.TestClient(app)
        for headers in ({}, AUTH, {"Authorization": "Bearer anything"}):
            r = c.simulate_get("/metrics", headers=headers)
            unknown = c.simulate_get("/no-such-route", headers=headers)
            assert r.status_code == unknown.status_code == 404
            assert r.json == unknown.json == {"error": {
                "code": "not_found", "message": unknown.json["error"]["message"]}}
    finally:
        context.db.dispose()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.one_of(
    st.just(""), st.just("Bearer"), st.just(f"Basic {TOKEN}"), st.just(f"Bearer {TOKEN}x"),
    st.just(f"Bearer {TOKEN[:-1]}"),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xff), max_size=80)
    .map(lambda t: f"Bearer {t}")))
def test_a_wrong_or_missing_token_is_401_with_the_json_error(
        client: falcon.testing.TestClient, header: str) -> None:
    if header.strip() == f"Bearer {TOKEN}":
        return
    r = client.simulate_get("/metrics", headers={"Authorization": header} if header else {})
    assert r.status_code == 401
    assert r.json["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert "consultbook_" not in r.text


def test_the_right_token_in_any_case_of_the_scheme(client: falcon.testing.TestClient) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = client.simulate_get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert r.status_code == 200
        assert "consultbook_http_requests_total" in r.text


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch,
                                               client: falcon.testing.TestClient) -> None:
    from web import metrics

    seen: list[tuple[bytes, bytes]] = []
    real = metrics.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(metrics.hmac, "compare_digest", spy)
    assert client.simulate_get("/metrics", headers={"Authorization": "Bearer nope"}
                               ).status_code == 401
    assert seen == [(b"nope", TOKEN.encode())]


# --------------------------------------------------------------------------- requests


def test_requests_are_counted_by_route_template_and_status_never_by_path(
        client: falcon.testing.TestClient, ctx: Context, store: Storefront) -> None:
    ids = [uuid.uuid4().hex[:20] for _ in range(5)]
    before = scrape(client)
    for hold_id in ids:
        assert store.release(hold_id).status_code == 404
    for n in range(3):
        assert client.simulate_get(f"/nothing/here/{n}").status_code == 404
    assert client.simulate_get("/healthz").status_code == 200
    r = client.simulate_get("/metrics", headers=AUTH)
    after = scrape(client)
    route = "/proxy/holds/{hold_id}"
    assert delta(before, after, "consultbook_http_requests_total", method="DELETE",
                 route=route, status="404") == 5
    assert delta(before, after, "consultbook_http_request_duration_seconds_count",
                 method="DELETE", route=route) == 5
    assert delta(before, after, "consultbook_http_requests_total", method="GET",
                 route="unmatched", status="404") == 3
    assert delta(before, after, "consultbook_http_requests_total", method="GET",
                 route="/healthz", status="200") == 1
    # Latency buckets are cumulative and end in +Inf = count.
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in after.items()
                     if k[0] == "consultbook_http_request_duration_seconds_bucket"
                     and dict(k[1])["route"] == route and dict(k[1])["method"] == "DELETE")
    assert buckets[-1] == (float("inf"), value(
        after, "consultbook_http_request_duration_seconds_count", method="DELETE", route=route))
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    for hold_id in ids:
        assert hold_id not in r.text
    assert "/nothing/here" not in r.text


def test_a_request_refused_before_routing_counts_under_its_route(
        client: falcon.testing.TestClient) -> None:
    before = scrape(client)
    r = client.simulate_post("/webhooks", headers={"Content-Length": str(11 << 20)}, body=b"")
    assert r.status_code == 413
    r = client.simulate_get("/proxy/availability", query_string="service=%00")
    assert r.status_code == 400
    after = scrape(client)
    assert delta(before, after, "consultbook_http_requests_total", method="POST",
                 route="/webhooks", status="413") == 1
    assert delta(before, after, "consultbook_http_requests_total", method="GET",
                 route="/proxy/availability", status="400") == 1


# --------------------------------------------------------------------------- outcomes


def test_holds_won_and_refused_by_code(client: falcon.testing.TestClient, admin: Admin,
                                       store: Storefront) -> None:
    catalog = make_catalog(admin)
    service, expert = catalog["service"], catalog["expert"]
    before = scrape(client)
    assert store.hold(service, expert, SLOT).status_code == 201
    assert store.hold(service, expert, SLOT, ip="198.51.100.1").status_code == 409
    assert store.hold(service, expert, "2026-12-01T09:07:00Z").status_code == 422
    for n in range(2):
        assert store.hold(service, expert, f"2026-12-01T{10 + n}:00:00Z").status_code == 201
    # The default allows three live holds per visitor: the fourth is refused.
    assert store.hold(service, expert, "2026-12-01T13:00:00Z").status_code == 429
    after = scrape(client)
    assert delta(before, after, "consultbook_holds_total", result="won") == 3
    assert delta(before, after, "consultbook_holds_total", result="slot_unavailable") == 1
    assert delta(before, after, "consultbook_holds_total", result="not_a_slot") == 1
    assert delta(before, after, "consultbook_holds_total", result="too_many_holds") == 1


def test_webhook_outcomes_by_topic(client: falcon.testing.TestClient, admin: Admin,
                                   store: Storefront) -> None:
    catalog = make_catalog(admin)
    hold = store.hold(catalog["service"], catalog["expert"], SLOT).json["hold"]
    before = scrape(client)
    payload = order_payload(7001, [hold])
    assert store.webhook("orders/paid", payload, webhook_id="wh-a").json == {
        "status": "processed"}
    assert store.webhook("orders/paid", payload, webhook_id="wh-a").json == {
        "status": "duplicate"}
    assert store.webhook("products/update", {"id": 1}).json["status"] == "ignored"
    assert store.webhook("orders/create", payload, secret="wrong").status_code == 401
    after = scrape(client)
    assert delta(before, after, "consultbook_webhooks_total", topic="orders/paid",
                 outcome="processed") == 1
    assert delta(before, after, "consultbook_webhooks_total", topic="orders/paid",
                 outcome="duplicate") == 1
    # A topic the app does not know is one series, whatever its name.
    assert delta(before, after, "consultbook_webhooks_total", topic="other",
                 outcome="ignored") == 1
    assert delta(before, after, "consultbook_webhooks_total", topic="orders/create",
                 outcome="refused") == 1


def test_provider_errors_reaching_a_request_are_counted_and_still_mapped(
        client: falcon.testing.TestClient, admin: Admin, store: Storefront,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from web import proxy

    catalog = make_catalog(admin)

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise ProviderUnavailable("calendar down", provider="google")

    monkeypatch.setattr(proxy.availability, "availability_json", failing)
    before = scrape(client)
    r = store.get("/availability", {"service": catalog["service"], "start": "2026-12-01",
                                    "days": "1"})
    assert r.status_code == 503 and r.json["error"]["code"] == "provider_unavailable"
    after = scrape(client)
    assert delta(before, after, "consultbook_provider_errors_total", provider="google",
                 kind="provider_unavailable") == 1


# --------------------------------------------------------------------------- at scrape


def test_outbox_backlog_age_and_errors_are_read_at_scrape(
        client: falcon.testing.TestClient, ctx: Context, admin: Admin, store: Storefront,
        clock: FixedClock) -> None:
    first = scrape(client)
    assert value(first, "consultbook_outbox_backlog") == 0
    assert value(first, "consultbook_outbox_oldest_pending_age_seconds") == 0
    assert value(first, "consultbook_database_up") == 1
    catalog = make_catalog(admin)
    hold = store.hold(catalog["service"], catalog["expert"], SLOT).json["hold"]
    assert store.webhook("orders/paid", order_payload(7002, [hold])).status_code == 200
    with ctx.db.read() as session:
        pending = session.query(OutboxItem).filter(OutboxItem.status == "pending").count()
    assert pending >= 1
    clock.advance(90)
    now = scrape(client)
    assert value(now, "consultbook_outbox_backlog") == pending
    assert value(now, "consultbook_outbox_oldest_pending_age_seconds") == pytest.approx(90)
    # A row whose provider kept failing, and one waiting for its retry.
    with ctx.db.write() as session:
        ids = [row.id for row in session.query(OutboxItem).order_by(OutboxItem.id)]
        session.execute(update(OutboxItem).where(OutboxItem.id == ids[0])
                        .values(status="failed", last_error="gave up after 8 attempts"))
        session.execute(update(OutboxItem).where(OutboxItem.id.in_(ids[1:]))
                        .values(last_error="smtp is down"))
        kinds = {row.kind: row.status for row in session.query(OutboxItem)}
    later = scrape(client)
    assert value(later, "consultbook_outbox_backlog") == pending - 1
    failed = sum(v for (n, labels), v in later.items()
                 if n == "consultbook_outbox_errors" and dict(labels)["status"] == "failed")
    retrying = sum(v for (n, labels), v in later.items()
                   if n == "consultbook_outbox_errors" and dict(labels)["status"] == "pending")
    assert (failed, retrying) == (1, len(ids) - 1)
    for kind in kinds:
        assert any(dict(labels).get("kind") == kind.replace(".", "_")
                   for (n, labels) in later if n == "consultbook_outbox_errors")


def test_free_busy_freshness_is_read_at_scrape(
        client: falcon.testing.TestClient, ctx: Context, admin: Admin, shop: ShopRef,
        clock: FixedClock) -> None:
    catalog = make_catalog(admin, experts=3)
    now = clock.now()
    rows = [("ok", now - timedelta(seconds=30)), ("stale", now - timedelta(seconds=900)),
            ("hidden", None)]
    with ctx.db.write() as session:
        for expert, (status, success) in zip(catalog["experts"], rows, strict=True):
            session.add(FreeBusyHealth(expert_id=expert, shop_id=shop.id, provider="google",
                                       status=status, reason=None, last_success_at=success,
                                       updated_at=now))
    samples = scrape(client)
    for status in ("ok", "stale", "hidden"):
        assert value(samples, "consultbook_freebusy_experts", status=status) == 1
    assert value(samples, "consultbook_freebusy_oldest_success_age_seconds") \
        == pytest.approx(900)


def test_a_database_outage_is_a_gauge_not_a_failed_scrape(
        client: falcon.testing.TestClient, ctx: Context,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> Any:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(ctx.db, "read", down)
    samples = scrape(client)
    assert value(samples, "consultbook_database_up") == 0
    assert ("consultbook_outbox_backlog", ()) not in samples
    assert value(samples, "consultbook_http_requests_total", method="GET", route="/metrics",
                 status="200") >= 1


# --------------------------------------------------------------------------- multiprocess

#: ``consultbook serve``, with observability installed by create_app (what web.app will
#: do itself; installing twice is a no-op).
SERVE = textwrap.dedent("""
    import sys
    import web.app
    from web import observability
    made = web.app.create_app
    def create_app(ctx):
        app = made(ctx)
        observability.install(app, ctx)
        return app
    web.app.create_app = create_app
    from engine.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def start_serve(tmp_path: Path, sqlite_template: Path, **env: str) -> tuple[Any, int, Path]:
    import shutil
    import subprocess

    from tests.tasks.helpers import free_port, process_env

    db = tmp_path / "serve.db"
    shutil.copy(sqlite_template, db)
    port = free_port()
    log = tmp_path / "serve.log"
    environ = process_env(f"sqlite:///{db}", CONSULTBOOK_METRICS_TOKEN=TOKEN,
                          CONSULTBOOK_OUTBOX_DIR=str(tmp_path / "outbox"), **env)
    environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, "serve", "--port", str(port),
                                 "--workers", "2"], env=environ, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port, log


def wait_up(proc: Any, port: int, log: Path) -> None:
    from tests.tasks.helpers import wait_for

    def up() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    wait_for(up, timeout=60, message="serve to answer")
    assert proc.poll() is None, log.read_text()


@pytest.mark.slow
def test_gunicorn_workers_add_up_in_multiprocess_mode(tmp_path: Path,
                                                      sqlite_template: Path) -> None:
    from tests.tasks.helpers import stop_process

    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    proc, port, log = start_serve(tmp_path, sqlite_template,
                                  PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        wait_up(proc, port, log)
        base = f"http://127.0.0.1:{port}"
        before = _healthz_total(base)
        for _ in range(40):
            # A new connection each time: the kernel spreads them over both workers.
            assert requests.get(f"{base}/healthz", timeout=5,
                                headers={"Connection": "close"}).status_code == 200
        # Both workers wrote their counters into the directory...
        pids = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
        assert len(pids) >= 2, sorted(p.name for p in metrics_dir.iterdir())
        # ...and whichever worker answers a scrape reports the sum.
        for _ in range(6):
            assert _healthz_total(base) - before == 40
        r = requests.get(f"{base}/metrics", timeout=5, headers=AUTH)
        assert "consultbook_outbox_backlog 0.0" in r.text
        # The database gauges are read once per scrape, never summed over workers.
        assert r.text.count("\nconsultbook_outbox_backlog ") == 1
    finally:
        stop_process(proc)


def _healthz_total(base: str) -> float:
    r = requests.get(f"{base}/metrics", timeout=5, headers={**AUTH, "Connection": "close"})
    assert r.status_code == 200, r.text
    total = 0.0
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == "consultbook_http_requests_total" \
                    and sample.labels.get("route") == "/healthz":
                total += sample.value
    return total


def test_multiprocess_mode_is_off_unless_the_directory_is_set() -> None:
    from web import metrics

    assert ("PROMETHEUS_MULTIPROC_DIR" in os.environ) == (metrics.multiprocess_dir()
                                                         is not None)
