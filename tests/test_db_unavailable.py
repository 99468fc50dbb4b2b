"""While the database is unreachable, requests answer ``503 service_unavailable`` with a
``Retry-After`` header, and fail fast (the contract); /readyz names the database.

The app here points at a database that is not there: PostgreSQL on a closed port, and a
SQLite file in a directory that does not exist. A request needing the database must
get its 503 within a few seconds (connect_timeout, short pool_timeout), never a 500.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from engine.bootstrap import bootstrap
from engine.clock import FixedClock
from engine.shopify import webhook_hmac
from tests.conftest import API_SECRET, NOW, admin_headers, make_config, proxy_query
from web.app import create_app

FAST = 5.0  # seconds: "fail fast"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["postgres", "sqlite"])
def down_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[object, object]]:
    if request.param == "postgres":
        url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/consultbook"
    else:
        url = f"sqlite:///{tmp_path}/no/such/dir/consultbook.db"
    ctx = bootstrap(make_config(url), clock=FixedClock(NOW))
    yield falcon.testing.TestClient(create_app(ctx)), ctx
    ctx.db.dispose()


def _assert_503(r: falcon.testing.Result, started: float) -> None:
    assert r.status_code == 503, r.text
    assert r.json["error"]["code"] == "service_unavailable", r.text
    assert set(r.json["error"]) == {"code", "message"}
    assert int(r.headers["retry-after"]) > 0
    assert time.monotonic() - started < FAST


def test_requests_answer_503_with_retry_after_and_fail_fast(down_app: tuple) -> None:
    client, ctx = down_app
    domain = "alpha.myshopify.com"
    for _ in range(2):  # the second time too: nothing cached a half-open state
        started = time.monotonic()
        r = client.simulate_get("/proxy/availability", query_string=proxy_query(
            ctx, domain, {"service": "svc_x", "start": "2026-12-01", "days": "1"}))
        _assert_503(r, started)

        started = time.monotonic()
        _assert_503(client.simulate_get("/admin/api/services",
                                        headers=admin_headers(ctx, domain)), started)

        body = json.dumps({"id": 1, "line_items": []}).encode()
        started = time.monotonic()
        r = client.simulate_post("/webhooks", body=body, headers={
            "X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": domain,
            "X-Shopify-Webhook-Id": "wh-down", "X-Shopify-Hmac-Sha256":
                webhook_hmac(body, API_SECRET)})
        _assert_503(r, started)

        started = time.monotonic()
        r = client.simulate_post("/proxy/holds", query_string=proxy_query(ctx, domain, {}),
                                 json={"service": "svc_x", "expert": "any",
                                       "start": "2026-12-01T09:00:00Z"})
        _assert_503(r, started)


def test_readyz_names_the_database(down_app: tuple) -> None:
    client, _ctx = down_app
    started = time.monotonic()
    r = client.simulate_get("/readyz")
    assert r.status_code == 503
    assert r.json["checks"]["database"].startswith("unavailable")
    assert time.monotonic() - started < FAST
    # liveness does not depend on the database
    assert client.simulate_get("/healthz").status_code == 200


def test_a_bad_signature_is_still_401_not_503(down_app: tuple) -> None:
    # what needs no database is decided as usual
    client, _ctx = down_app
    r = client.simulate_get("/proxy/availability", query_string="shop=a&signature=00")
    assert r.status_code == 401
    r = client.simulate_post("/webhooks", body=b"{}", headers={
        "X-Shopify-Hmac-Sha256": "bad", "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Shop-Domain": "a.myshopify.com"})
    assert r.status_code == 401


def test_a_sqlite_writer_locked_out_past_the_busy_timeout_is_a_503_not_a_500(
        tmp_path: Path) -> None:
    import sqlite3

    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from engine.store.db import database_unavailable

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # holds the write lock
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        with pytest.raises(OperationalError) as caught, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert database_unavailable(caught.value)
    finally:
        engine.dispose()
        holder.execute("ROLLBACK")
        holder.close()
    # ... while a statement's own fault is not "unavailable".
    with pytest.raises(OperationalError) as bad, create_engine("sqlite://").begin() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert not database_unavailable(bad.value)
