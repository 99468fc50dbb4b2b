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
from urllib.parse import urlencode

import falcon.testing
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.config import Config
from engine.crypto import generate_key
from engine.services.shops import ShopRef, install_shop
from engine.shopify import encode_session_token, sign_proxy
from engine.store import Database
from engine.store.migrate import upgrade
from engine.store.models import Base
from web.app import create_app

POSTGRES_URL = os.environ.get("CONSULTBOOK_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("CONSULTBOOK_TEST_REDIS_URL", "")

API_KEY = "test-api-key"
API_SECRET = "shpss_0123456789abcdef0123456789abcdef"
KEY = generate_key()
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


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


def _truncate(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database: SQLite, and PostgreSQL when configured."""
    if request.param == "sqlite":
        path = tmp_path / "consultbook.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _truncate(url)
    return url


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
