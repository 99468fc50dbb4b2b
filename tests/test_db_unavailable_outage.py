"""A real PostgreSQL outage while the app runs: 503 ``service_unavailable`` with
``Retry-After`` during it, fast; full service after it, without restarting the app.

The test makes its OWN PostgreSQL cluster (pg_createcluster on a free port, as root)
and stops and starts that one; the shared server is never touched. Skipped where that
cannot be done (not root, no postgresql-common).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import falcon.testing
import pytest
from sqlalchemy import create_engine, text

from engine.bootstrap import bootstrap
from engine.clock import FixedClock
from engine.services.shops import install_shop
from engine.store.migrate import upgrade
from tests.conftest import NOW, Admin, Storefront, make_catalog, make_config
from web.app import create_app

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def _version() -> str | None:
    if os.geteuid() != 0 or not shutil.which("pg_createcluster"):
        return None
    versions = sorted(os.listdir("/usr/lib/postgresql")) if os.path.isdir(
        "/usr/lib/postgresql") else []
    return versions[-1] if versions else None


@pytest.fixture
def own_cluster() -> Iterator[tuple[str, str, str]]:
    version = _version()
    if version is None:
        pytest.skip("needs root and postgresql-common (pg_createcluster)")
    name = f"consultbook_outage_{uuid.uuid4().hex[:8]}"
    port = _free_port()
    _run("pg_createcluster", version, name, "-p", str(port), "--",
         "--auth-host=trust", "--auth-local=trust")
    try:
        _run("pg_ctlcluster", version, name, "start")
        server = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE consultbook"))
        admin.dispose()
        yield version, name, f"postgresql+psycopg://postgres@127.0.0.1:{port}/consultbook"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True,
                       timeout=120, check=False)


def test_outage_answers_503_then_recovers_without_a_restart(own_cluster: Any) -> None:
    version, name, url = own_cluster
    ctx = bootstrap(make_config(url), clock=FixedClock(NOW))
    upgrade(ctx.db.engine)
    try:
        client = falcon.testing.TestClient(create_app(ctx))
        install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com", "Europe/Berlin")
        admin = Admin(client, ctx, "alpha.myshopify.com")
        cat = make_catalog(admin)
        store = Storefront(client, ctx, "alpha.myshopify.com")
        query = {"service": cat["service"], "start": "2026-12-01", "days": "1"}

        def requests() -> list[falcon.testing.Result]:
            return [store.get("/availability", query), admin("GET", "/services"),
                    store.hold(cat["service"], cat["expert"], "2026-12-01T08:00:00Z")]

        assert [r.status_code for r in requests()] == [200, 200, 201]

        _run("pg_ctlcluster", version, name, "stop", "-m", "fast")
        for _ in range(3):  # pooled connections found dead, then refused connections
            started = time.monotonic()
            for r in requests():
                assert r.status_code == 503, r.text
                assert r.json["error"]["code"] == "service_unavailable"
                assert int(r.headers["retry-after"]) > 0
            assert time.monotonic() - started < 10
        ready = client.simulate_get("/readyz")
        assert ready.status_code == 503 and "database" in ready.json["checks"]

        _run("pg_ctlcluster", version, name, "start")
        deadline = time.monotonic() + 30
        while True:
            codes = [r.status_code for r in requests()[:2]]
            if codes == [200, 200] or time.monotonic() > deadline:
                break
            assert all(c == 503 for c in codes), codes
            time.sleep(0.5)
        assert codes == [200, 200]
        assert client.simulate_get("/readyz").status_code == 200
        held = store.hold(cat["service"], cat["expert"], "2026-12-01T09:00:00Z")
        assert held.status_code == 201, held.text
    finally:
        ctx.db.dispose()
