"""The process-local read cache: void after a local write, unused past its TTL, and
availability sees an admin edit at once in the same process."""

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
