"""Shared fixtures: databases (SQLite always, PostgreSQL when its URL is set), a fixed
clock, the app under falcon.testing, and helpers that sign like Shopify does."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import falcon.testing
import pytest
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.config import Config
from engine.crypto import generate_key
from engine.services.shops import ShopRef, install_shop
from engine.shopify import encode_session_token, sign_proxy
from engine.store import Database
from engine.store.migrate import upgrade
from web.app import create_app


def worker_redis_url(url: str, worker: str) -> str:
    """The Redis URL of one pytest-xdist worker: worker ``gwN`` uses database
    ``(D + N) % 16``, ``D`` being the database in ``url`` (0 when it names none), so
    workers that flush their database never flush each other's. Without xdist (no
    worker id) the URL is used as given."""
    if not url or not worker.startswith("gw") or not worker[2:].isdigit():
        return url
    parts = urlsplit(url)
    path = parts.path.strip("/")
    db = (int(path) if path.isdigit() else 0) + int(worker[2:])
    return urlunsplit(parts._replace(path=f"/{db % 16}"))


# Set before any test module is imported (several read the variable at import time) and
# inherited by the processes the tests start.
if os.environ.get("CONSULTBOOK_TEST_REDIS_URL"):
    os.environ["CONSULTBOOK_TEST_REDIS_URL"] = worker_redis_url(
        os.environ["CONSULTBOOK_TEST_REDIS_URL"], os.environ.get("PYTEST_XDIST_WORKER", ""))

POSTGRES_URL = os.environ.get("CONSULTBOOK_TEST_POSTGRES_URL", "")
# PgBouncer in transaction pooling in front of that PostgreSQL (.ci/run starts one): the
# tests of PGBOUNCER_SUBSET also run through it, as the ``pgbouncer`` database variant.
PGBOUNCER_URL = os.environ.get("CONSULTBOOK_TEST_PGBOUNCER_URL", "")
#: What runs through PgBouncer besides directly: claims (the database's refusals),
#: holds, webhooks and the money path, and the process-level races on them.
PGBOUNCER_SUBSET = frozenset({
    "test_claims_constraint.py", "test_claims_concurrency.py", "test_holds_api.py",
    "test_hold_write_path.py", "test_webhooks.py", "test_webhook_ingest_paths.py",
    "test_money_path.py", "capacity/test_concurrency_processes.py",
})
TESTS = Path(__file__).resolve().parent
REDIS_URL = os.environ.get("CONSULTBOOK_TEST_REDIS_URL", "")

API_KEY = "test-api-key"
API_SECRET = "shpss_0123456789abcdef0123456789abcdef"
KEY = generate_key()
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday


FAULTS = Path(__file__).resolve().parent / "faults"
#: Modules whose tests each start several processes with their own connection pools.
PROCESS_HEAVY = frozenset({"test_two_instances.py", "test_claims_concurrency.py",
                           "capacity/test_concurrency_processes.py"})


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: a worker per CPU this process may run on (pytest-xdist would count
    physical cores where psutil is installed: one on a two-vCPU machine).
    PYTEST_XDIST_AUTO_NUM_WORKERS overrides it, as with pytest-xdist's own count."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if env.isdigit():
        return int(env)
    return max(1, len(os.sched_getaffinity(0)))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        variant = callspec.params.get("db_url") if callspec is not None else None
        if variant == "pgbouncer" and not _in_pgbouncer_subset(item):
            dropped.append(item)
            continue
        if item.get_closest_marker("child_process_only") and not os.environ.get(
                "CONSULTBOOK_TEST_STATEFUL_CHILD"):
            dropped.append(item)  # run by its parent test in a fresh process
            continue
        if variant in ("postgres", "pgbouncer"):
            item.add_marker(pytest.mark.postgres)
        group = _xdist_group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _in_pgbouncer_subset(item: pytest.Item) -> bool:
    path = Path(str(item.fspath)).resolve()
    return path.is_relative_to(TESTS) and path.relative_to(TESTS).as_posix() in PGBOUNCER_SUBSET


def _xdist_group(item: pytest.Item) -> str | None:
    """The unit pytest-xdist (``--dist loadgroup``, the addopts) gives one worker:

    * the fault tests, all together: they share one PostgreSQL cluster
      (tests/faults/conftest.py), start gunicorn, Celery and beat, and time answers, so
      no two run at once;
    * the modules of :data:`PROCESS_HEAVY`, together: each starts several processes with
      connection pools of their own (``serve`` instances, fighting processes), and two of
      them at once, with PgBouncer's pool, can exhaust PostgreSQL's connections;
    * a module whose tests use a module- or class-scoped fixture, whole: the fixture is
      made once, and its tests run in their order, as in a run without xdist;
    * any other test on its own (no group).
    """
    path = Path(str(item.fspath)).resolve()
    if path.is_relative_to(FAULTS):
        return "faults"
    if path.is_relative_to(TESTS) and path.relative_to(TESTS).as_posix() in PROCESS_HEAVY:
        return "processes"
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if any(d[-1].scope in ("module", "class", "package") for d in defs if d):
        return item.nodeid.split("::", 1)[0]
    return None


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    if not POSTGRES_URL:
        pytest.skip("CONSULTBOOK_TEST_POSTGRES_URL is not set")
    server = make_url(POSTGRES_URL)
    name = f"consultbook_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    db = Database(url)
    upgrade(db.engine)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


_CLEANERS: dict[str, Any] = {}


def _truncate(url: str) -> None:
    """Empty every table of the database but Alembic's -- the engine's and every plugin's
    (found in the database once, not only the engine's models). DELETE in dependency
    order is much faster than TRUNCATE for the handful of rows a test leaves (TRUNCATE
    rewrites every table's files); ids are random strings or serials nobody asserts on."""
    found = _CLEANERS.get(url)
    if found is None:
        engine = create_engine(url, poolclass=NullPool)
        tables = MetaData()
        tables.reflect(engine)
        # One round trip: the DELETEs (in dependency order) as one multi-statement
        # string, which PostgreSQL runs as one transaction.
        script = "; ".join(f'DELETE FROM "{table.name}"'
                           for table in reversed(tables.sorted_tables)
                           if not table.name.startswith("alembic_version"))
        found = _CLEANERS[url] = (engine, script)
    engine, script = found
    with engine.connect() as conn:
        conn.exec_driver_sql(script)
        conn.commit()


@pytest.fixture(params=["sqlite", "postgres", "pgbouncer"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database: SQLite, and PostgreSQL when configured -- directly, and
    for the tests of PGBOUNCER_SUBSET also through PgBouncer when that is configured (the
    same database, migrated and emptied directly: migrations do not go through the
    pooler, docs/operations.md)."""
    if request.param == "sqlite":
        path = tmp_path / "consultbook.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    if request.param == "pgbouncer" and not PGBOUNCER_URL:
        pytest.skip("CONSULTBOOK_TEST_PGBOUNCER_URL is not set")
    url: str = request.getfixturevalue("postgres_database")
    _truncate(url)
    if request.param == "pgbouncer":
        bouncer = make_url(PGBOUNCER_URL)
        return make_url(url).set(host=bouncer.host, port=bouncer.port) \
            .render_as_string(hide_password=False)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def bare_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database, no schema at all (migration tests): SQLite, and a
    PostgreSQL database of its own when configured."""
    """An engine on an empty database (no schema at all)."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}", poolclass=NullPool)
        yield engine
        engine.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("CONSULTBOOK_TEST_POSTGRES_URL is not set")
    server = make_url(POSTGRES_URL)
    name = f"consultbook_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(server.set(database=name), poolclass=NullPool)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "consultbook.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def make_config(url: str, **overrides: Any) -> Config:
    values: dict[str, Any] = {"database_url": url, "api_key": API_KEY, "api_secret": API_SECRET,
                              "encryption_keys": (KEY,)}
    values.update(overrides)
    return Config(**values)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def ctx(db_url: str, clock: FixedClock) -> Iterator[Context]:
    context = bootstrap(make_config(db_url), clock=clock)
    yield context
    context.db.dispose()


@pytest.fixture
def client(ctx: Context) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(ctx))


@pytest.fixture
def shop(ctx: Context) -> ShopRef:
    return install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com", "Europe/Berlin",
                        access_token="shpat_alpha")


@pytest.fixture
def other_shop(ctx: Context) -> ShopRef:
    return install_shop(ctx.db, ctx.clock, ctx.keyring, "beta.myshopify.com", "America/New_York")


def admin_headers(ctx: Context, domain: str, **kwargs: Any) -> dict[str, str]:
    token = encode_session_token(domain, api_key=API_KEY, api_secret=API_SECRET,
                                 now=int(ctx.clock.now().timestamp()), **kwargs)
    return {"Authorization": f"Bearer {token}"}


def proxy_query(ctx: Context, domain: str, params: dict[str, str], **extra: str) -> str:
    signed = {**params, "shop": domain, "path_prefix": "/apps/consult",
              "timestamp": str(int(ctx.clock.now().timestamp()))}
    signed.update(extra)
    signed["signature"] = sign_proxy(signed, API_SECRET)
    return urlencode(signed)


class Admin:
    """The embedded admin API as one shop's merchant sees it."""

    def __init__(self, client: falcon.testing.TestClient, ctx: Context, domain: str) -> None:
        self.client, self.ctx, self.domain = client, ctx, domain

    def __call__(self, method: str, path: str, body: Any = None) -> falcon.testing.Result:
        kwargs: dict[str, Any] = {"headers": admin_headers(self.ctx, self.domain)}
        if body is not None:
            kwargs["json"] = body
        return self.client.simulate_request(method, "/admin/api" + path, **kwargs)


@pytest.fixture
def admin(client: falcon.testing.TestClient, ctx: Context, shop: ShopRef) -> Admin:
    return Admin(client, ctx, shop.domain)


@pytest.fixture
def other_admin(client: falcon.testing.TestClient, ctx: Context, other_shop: ShopRef) -> Admin:
    return Admin(client, ctx, other_shop.domain)


# --------------------------------------------------------------------------- bookings


class Storefront:
    """The storefront side of one shop: signed App Proxy calls and Shopify's webhooks."""

    def __init__(self, client: falcon.testing.TestClient, ctx: Context, domain: str) -> None:
        self.client, self.ctx, self.domain = client, ctx, domain
        self._webhook_n = 0

    def get(self, path: str, params: dict[str, str], **extra: str) -> falcon.testing.Result:
        return self.client.simulate_get("/proxy" + path,
                                        query_string=proxy_query(self.ctx, self.domain, params,
                                                                 **extra))

    def hold(self, service: str, expert: str, start: str, *, customer: str | None = None,
             ip: str = "203.0.113.7", **body: Any) -> falcon.testing.Result:
        extra = {"logged_in_customer_id": customer} if customer else {}
        return self.client.simulate_post(
            "/proxy/holds", query_string=proxy_query(self.ctx, self.domain, {}, **extra),
            json={"service": service, "expert": expert, "start": start, **body},
            headers={"X-Forwarded-For": ip})

    def release(self, hold: str) -> falcon.testing.Result:
        return self.client.simulate_delete(f"/proxy/holds/{hold}",
                                           query_string=proxy_query(self.ctx, self.domain, {}))

    def webhook(self, topic: str, payload: Any, *, webhook_id: str | None = None,
                triggered_at: str | None = None, secret: str = API_SECRET,
                domain: str | None = None) -> falcon.testing.Result:
        import json as _json

        from engine.shopify import webhook_hmac

        if webhook_id is None:
            self._webhook_n += 1
            webhook_id = f"wh-{uuid.uuid4().hex}"
        body = _json.dumps(payload).encode()
        headers = {"X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": domain or self.domain,
                   "X-Shopify-Hmac-Sha256": webhook_hmac(body, secret),
                   "X-Shopify-Webhook-Id": webhook_id, "Content-Type": "application/json"}
        if triggered_at:
            headers["X-Shopify-Triggered-At"] = triggered_at
        return self.client.simulate_post("/webhooks", body=body, headers=headers)


@pytest.fixture
def store(client: falcon.testing.TestClient, ctx: Context, shop: ShopRef) -> Storefront:
    return Storefront(client, ctx, shop.domain)


WEEKDAYS_9_17 = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


def make_catalog(admin: Admin, *, duration: int = 30, buffer_before: int = 0,
                 buffer_after: int = 0, experts: int = 1, title: str = "Consultation",
                 price_variant: int = 4242) -> dict[str, Any]:
    """A service and `experts` experts working Mon-Fri 09:00-17:00 in the shop's zone."""
    svc = admin("POST", "/services", {"title": title, "duration_minutes": duration,
                                      "buffer_before_minutes": buffer_before,
                                      "buffer_after_minutes": buffer_after,
                                      "variant_id": price_variant}).json
    ids = []
    for n in range(experts):
        e = admin("POST", "/experts", {"name": f"Expert {n}", "email": f"e{n}@example.com",
                                       "services": [svc["id"]]}).json
        admin("PUT", f"/experts/{e['id']}/schedule", {"weekly": WEEKDAYS_9_17, "overrides": []})
        ids.append(e["id"])
    return {"service": svc["id"], "experts": ids, "expert": ids[0]}


def order_payload(order_id: int, holds: list[str], *, financial_status: str = "paid",
                  price: str = "50.00", email: str = "jon@example.com",
                  first_name: str = "Jon", last_name: str = "Snow", customer_id: int = 77,
                  updated_at: str = "2026-11-30T12:00:00Z", currency: str = "EUR",
                  cancelled: bool = False, variant_id: int | None = 4242,
                  quantity: int = 1) -> dict[str, Any]:
    """An order as Shopify's webhooks send it; each line buys ``variant_id`` (what
    make_catalog's service sells, by default) with one ``_hold`` property."""
    return {
        "id": order_id, "email": email, "financial_status": financial_status,
        "currency": currency, "updated_at": updated_at,
        "cancelled_at": updated_at if cancelled else None,
        "customer": {"id": customer_id, "first_name": first_name, "last_name": last_name,
                     "email": email},
        "line_items": [{"id": order_id * 100 + n, "price": price, "quantity": quantity,
                        "variant_id": variant_id, "product_id": 9100,
                        "properties": [{"name": "_hold", "value": h},
                                       {"name": "Appointment", "value": "x"}]}
                       for n, h in enumerate(holds)],
    }
