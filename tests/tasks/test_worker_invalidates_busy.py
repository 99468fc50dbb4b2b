"""A plugin's periodic job that says "this expert's busy time changed" reaches the shared
free/busy cache when it runs in a worker (Celery or the embedded one), exactly as a
plugin route does in a web process: the worker's wiring gives its plugins the same
invalidation the web's has, instead of a no-op."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine import hookimpl
from engine.bootstrap import Context
from engine.providers import JobHost, JobRegistry
from engine.services.freebusy import CacheEntry, DatabaseBusyCache
from engine.services.shops import ShopRef
from engine.tasks import jobs
from tests.plugins.conftest import add_experts


class Changed:
    """A plugin whose job learns (from its provider) that one expert's calendar changed."""

    def __init__(self) -> None:
        self.target: tuple[str, str] | None = None

    @hookimpl
    def consultbook_register_jobs(self, jobs: JobRegistry) -> None:
        jobs.add("changed_calendars", 60, self.run)

    def run(self, host: JobHost) -> dict[str, int]:
        assert self.target is not None
        host.invalidate_busy(*self.target)
        return {"invalidated": 1}


@pytest.fixture
def worker(ctx: Context) -> Iterator[tuple[jobs.Deps, Changed]]:
    plugin = Changed()
    deps = jobs.build_deps(ctx.config, clock=ctx.clock, db=ctx.db,
                           extra_plugins=[("changed_calendars", plugin)])
    yield deps, plugin


def test_a_plugin_job_in_the_worker_invalidates_the_shared_busy_cache(
        ctx: Context, shop: ShopRef, worker: tuple[jobs.Deps, Changed]) -> None:
    deps, plugin = worker
    mine, other = add_experts(ctx, shop, ["a@example.com", "b@example.com"])
    cache = DatabaseBusyCache(ctx.db)  # the test config has no Redis: the shared table
    now = ctx.clock.now().timestamp()
    keys = {e: f"google:{e}:abc:0" for e in (mine, other)}
    cache.put_many(shop.id, {k: CacheEntry(now, ((0, 60),)) for k in keys.values()}, 3600)
    assert set(cache.get_many(list(keys.values()))) == set(keys.values())

    plugin.target = (shop.id, mine)
    assert jobs.run_plugin_job(deps, "changed_calendars", "worker-1") == {"invalidated": 1}

    left: Any = cache.get_many(list(keys.values()))
    assert set(left) == {keys[other]}, "the worker's invalidation did not reach the cache"
