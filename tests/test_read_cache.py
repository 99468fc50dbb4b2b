"""The process-local read cache: void after a local write, unused past its TTL (a
versioned entry: while its version holds, whatever its age), unversioned entries dropped
when a shop's catalog version moves, and availability sees an admin edit at once in the
same process."""

from __future__ import annotations

import time
from typing import Any

from engine.store.db import ReadCache
from tests.conftest import Admin, Storefront, make_catalog


def test_entries_expire_after_the_ttl() -> None:
    cache = ReadCache(ttl=0.05)
    cache.put("k", 1)
    assert cache.get("k") == 1
    time.sleep(0.06)
    assert cache.get("k") is None


def test_a_versioned_entry_is_used_while_its_version_holds_whatever_its_age() -> None:
    cache = ReadCache(ttl=0.0)
    cache.put("k", 1, version=7)
    assert cache.get("k", version=7) == 1
    assert cache.get("k", version=8) is None
    assert cache.get("k") is None  # a reader without a version has none to check
    cache.put("u", 2)
    assert cache.get("u", version=7) is None  # nor is an unversioned entry versioned
    cache.put("k", 3, version=8)
    assert cache.get("k", version=8) == 3 and cache.get("k", version=7) is None


def test_a_moved_catalog_version_drops_the_unversioned_entries() -> None:
    cache = ReadCache(ttl=60.0)
    cache.observe("shop_a", 3)
    cache.put("plain", 1)
    cache.put("versioned", 2, version=3)
    cache.observe("shop_a", 3)  # unchanged
    cache.observe("shop_a", 2)  # an older reading (a slower request): no news
    assert cache.get("plain") == 1
    cache.observe("shop_a", 4)
    assert cache.get("plain") is None
    assert cache.get("versioned", version=3) == 2  # it checks its own version
    cache.put("plain", 1)
    cache.observe("shop_b", 0)  # first sight of a shop in this process
    assert cache.get("plain") is None


def test_a_write_transaction_clears_it_unless_told_it_writes_only_claims(ctx: Any) -> None:
    ctx.db.cache.put("k", 1)
    with ctx.db.write(keep_cache=True):
        pass
    assert ctx.db.cache.get("k") == 1
    with ctx.db.write():
        pass
    assert ctx.db.cache.get("k") is None


def test_availability_sees_a_schedule_change_at_once(store: Storefront, admin: Admin) -> None:
    cat = make_catalog(admin)
    query = {"service": cat["service"], "start": "2026-12-01", "days": "1"}
    assert len(store.get("/availability", query).json["slots"]) == 16
    admin("PUT", f"/experts/{cat['expert']}/schedule",
          {"weekly": {"tue": [["09:00", "10:00"]]}, "overrides": []})
    assert len(store.get("/availability", query).json["slots"]) == 2
    admin("PATCH", f"/services/{cat['service']}", {"duration_minutes": 60})
    assert len(store.get("/availability", query).json["slots"]) == 1
