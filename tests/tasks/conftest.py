"""Fixtures of the worker suite: a context with test plugins (a recording mailer, a
video provider), Redis, and resetting the test plugins' logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.services.providers import Plugins
from engine.tasks.jobs import Deps
from tests.conftest import REDIS_URL, make_config
from tests.tasks.helpers import EXTRA, FAST, MAIL, FakeVideo


@pytest.fixture(autouse=True)
def _reset_logs() -> Iterator[None]:
    MAIL.sent.clear()
    MAIL.failures.clear()
    MAIL.calls = 0
    FakeVideo.made.clear()
    yield


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def outbox_dir(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def ctx(db_url: str, clock: FixedClock, overrides: dict[str, Any],
        outbox_dir: Path) -> Iterator[Context]:
    config = make_config(db_url, outbox_dir=str(outbox_dir), **{**FAST, **overrides})
    context = bootstrap(config, clock=clock)
    context.plugins = Plugins.load(config, context.db, context.keyring, clock, extra=EXTRA)
    yield context
    context.db.dispose()


@pytest.fixture
def deps(ctx: Context) -> Deps:
    return Deps(config=ctx.config, db=ctx.db, clock=ctx.clock, plugins=ctx.plugins)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A dedicated Redis database, flushed before and after (skipped without Redis)."""
    if not REDIS_URL:
        pytest.skip("CONSULTBOOK_TEST_REDIS_URL is not set")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def shop(ctx: Context) -> Any:
    """The root fixture's shop, without a Shopify access token: the worker suite counts
    the booking's outbox rows, and order tagging (which needs a token and Shopify) is
    tested against the fake Shopify in tests/install/test_order_actions.py."""
    from engine.services.shops import install_shop

    return install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com", "Europe/Berlin")
