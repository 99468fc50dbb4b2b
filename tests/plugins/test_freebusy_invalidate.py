"""Push sync's invalidation reaches the free/busy cache the process really uses: the
database cache, or Redis -- also when Redis is configured only as the broker."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.services.freebusy import CacheEntry, RedisBusyCache, make_cache
from engine.services.shops import ShopRef, install_shop
from tests.conftest import NOW, make_config

REDIS_URL = os.environ.get("CONSULTBOOK_TEST_REDIS_URL", "")


@pytest.fixture(params=["database", "redis-broker"])
def wired(request: pytest.FixtureRequest, db_url: str, tmp_path: Path
          ) -> Iterator[tuple[Context, ShopRef]]:
    values: dict[str, Any] = {"outbox_dir": str(tmp_path / "outbox")}
    if request.param == "redis-broker":
        if not REDIS_URL:
            pytest.skip("CONSULTBOOK_TEST_REDIS_URL is not set")
        values["broker_url"] = REDIS_URL  # no CONSULTBOOK_REDIS_URL: the broker's Redis
    ctx = bootstrap(make_config(db_url, **values), clock=FixedClock(NOW))
    shop = install_shop(ctx.db, ctx.clock, ctx.keyring, "inval.myshopify.com",
                        "Europe/Berlin")
    yield ctx, shop
    cache = ctx.busy_source.cache  # type: ignore[attr-defined]
    if isinstance(cache, RedisBusyCache):
        cache.client.flushdb()
        cache.close()
    ctx.db.dispose()


def test_invalidate_busy_empties_the_cache_in_use(wired: tuple[Context, ShopRef]) -> None:
    ctx, shop = wired
    cache = ctx.busy_source.cache  # type: ignore[attr-defined]
    assert type(cache) is type(make_cache(ctx.plugins))
    entry = CacheEntry(time.time(), ((1, 2),))
    keys = ["google:exp_a:abc:1", "google:exp_a:abc:2", "google:exp_b:abc:1"]
    cache.put_many(shop.id, dict.fromkeys(keys, entry), 600)
    assert set(cache.get_many(keys)) == set(keys)
    ctx.plugins.invalidate_busy(shop.id, "exp_a")
    assert set(cache.get_many(keys)) == {"google:exp_b:abc:1"}
