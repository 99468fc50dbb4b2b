"""Free/busy in availability: provider busy time hides slots, one call per batch of experts
per cache period, cached in the database or Redis, and fail closed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from engine.bootstrap import Context
from engine.services.shops import ShopRef
from engine.store.models import ShopSettings
from tests.conftest import Admin, Storefront, make_catalog
from tests.fakes.google import FakeGoogle
from tests.plugins.conftest import connect, google_config, set_providers

REDIS_URL = os.environ.get("CONSULTBOOK_TEST_REDIS_URL", "")
TUESDAY_9_BERLIN = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def overrides(google: FakeGoogle) -> dict[str, Any]:
    return {**google_config(google), "freebusy_ttl_seconds": 60,
            "freebusy_max_stale_seconds": 600}


@pytest.fixture
def google_shop(ctx: Context, shop: ShopRef, google: FakeGoogle) -> ShopRef:
    connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})
    set_providers(ctx, shop, calendar="google", video="meet")
    return shop


def starts(store: Storefront, service: str, day: str = "2026-12-01", days: int = 1,
           expert: str | None = None) -> list[str]:
    params = {"service": service, "start": day, "days": str(days)}
    if expert:
        params["expert"] = expert
    got = store.get("/availability", params)
    assert got.status_code == 200, got.text
    return [s["start"] for s in got.json["slots"]]


def expert_status(admin: Admin) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in admin("GET", "/connections").json["experts"]}


def test_google_busy_time_hides_the_overlapping_slots(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront) -> None:
    cat = make_catalog(admin)
    google.busy["e0@example.com"] = [(TUESDAY_9_BERLIN, TUESDAY_9_BERLIN + timedelta(hours=1))]
    got = starts(store, cat["service"])
    assert "2026-12-01T08:00:00Z" not in got and "2026-12-01T08:30:00Z" not in got
    assert "2026-12-01T09:00:00Z" in got
    assert expert_status(admin)[cat["expert"]]["status"] == "ok"


def test_one_call_per_batch_of_experts_per_cache_period(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront) -> None:
    cat = make_catalog(admin, experts=60)
    for n in range(60):
        google.busy[f"e{n}@example.com"] = []
    assert starts(store, cat["service"], days=14)
    first = len(google.calls("POST", "/freeBusy$"))
    assert first == 2  # 60 experts = batches of 50 and 10; 14 days in one range
    starts(store, cat["service"], day="2026-12-02", days=7)
    starts(store, cat["service"], days=14)
    assert len(google.calls("POST", "/freeBusy$")) == first  # cached
    ctx.clock.advance(61)  # type: ignore[attr-defined]
    starts(store, cat["service"], days=14)
    assert len(google.calls("POST", "/freeBusy$")) == first + 2
    print(f"\nfree/busy calls for 60 experts x 14 days, 4 page views: "
          f"{len(google.calls('POST', '/freeBusy$'))}")


def test_fail_closed_without_a_cache(ctx: Context, google_shop: ShopRef, google: FakeGoogle,
                                     admin: Admin, store: Storefront) -> None:
    cat = make_catalog(admin, experts=2)
    google.busy["e1@example.com"] = []
    google.fail("POST", "/freeBusy$", 503, times=100)
    assert starts(store, cat["service"]) == []
    status = expert_status(admin)
    assert status[cat["experts"][0]]["status"] == "hidden"
    assert "unavailable" in status[cat["experts"][0]]["reason"]


def test_stale_cache_is_used_until_the_limit_then_slots_are_hidden(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront) -> None:
    cat = make_catalog(admin)
    google.busy["e0@example.com"] = [(TUESDAY_9_BERLIN, TUESDAY_9_BERLIN + timedelta(hours=1))]
    fresh = starts(store, cat["service"])
    assert fresh
    google.fail("POST", "/freeBusy$", 500, times=1000)
    ctx.clock.advance(300)  # type: ignore[attr-defined]  # past the TTL, within the limit
    assert starts(store, cat["service"]) == fresh
    assert expert_status(admin)[cat["expert"]]["status"] == "stale"
    ctx.clock.advance(400)  # type: ignore[attr-defined]  # now 700 s old > 600 s
    assert starts(store, cat["service"]) == []
    assert expert_status(admin)[cat["expert"]]["status"] == "hidden"
    google._faults.clear()
    assert starts(store, cat["service"]) == fresh
    assert expert_status(admin)[cat["expert"]]["status"] == "ok"


def test_a_revoked_grant_hides_slots_and_says_why(ctx: Context, google_shop: ShopRef,
                                                  google: FakeGoogle, admin: Admin,
                                                  store: Storefront) -> None:
    cat = make_catalog(admin)
    for token in list(google.refresh_tokens):
        google.revoke(token)
    assert starts(store, cat["service"]) == []
    listing = admin("GET", "/connections").json
    assert next(c for c in listing["connections"] if c["provider"] == "google")["status"] \
        == "broken"
    assert "reconnect" in expert_status(admin)[cat["expert"]]["reason"].lower()


def test_an_expert_without_email_is_hidden_with_a_reason(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront) -> None:
    cat = make_catalog(admin, experts=2)
    google.busy["e1@example.com"] = []
    admin("PATCH", f"/experts/{cat['experts'][0]}", {"email": None})
    got = store.get("/availability", {"service": cat["service"], "start": "2026-12-01",
                                      "days": "1"}).json["slots"]
    assert {s["expert"] for s in got} == {cat["experts"][1]}
    assert "email" in expert_status(admin)[cat["experts"][0]]["reason"]


def test_a_calendar_that_is_not_connected_hides_slots(ctx: Context, shop: ShopRef,
                                                      admin: Admin, store: Storefront) -> None:
    cat = make_catalog(admin)
    set_providers(ctx, shop, calendar="outlook")
    assert starts(store, cat["service"]) == []
    listing = admin("GET", "/connections").json
    assert listing["problems"] and listing["problems"][0]["kind"] == "calendar"


def test_a_provider_that_is_not_installed_is_a_clear_error_not_a_crash(
        ctx: Context, shop: ShopRef, admin: Admin, store: Storefront) -> None:
    cat = make_catalog(admin)
    with ctx.db.write() as session:
        session.execute(update(ShopSettings).where(ShopSettings.shop_id == shop.id)
                        .values(calendar_provider="exchange2003"))
    assert starts(store, cat["service"]) == []
    reason = expert_status(admin)[cat["expert"]]["reason"]
    assert "exchange2003" in reason and "not installed" in reason


def test_local_busy_blocks_hide_slots(ctx: Context, shop: ShopRef, admin: Admin,
                                      store: Storefront) -> None:
    cat = make_catalog(admin)
    before = starts(store, cat["service"])
    block = admin("POST", "/calendar/busy", {"expert": cat["expert"],
                                              "start": "2026-12-01T08:00:00Z",
                                              "end": "2026-12-01T09:00:00Z",
                                              "summary": "Dentist"})
    assert block.status_code == 201, block.text
    after = starts(store, cat["service"])
    assert set(before) - set(after) == {"2026-12-01T08:00:00Z", "2026-12-01T08:30:00Z"}
    assert admin("DELETE", f"/calendar/busy/{block.json['id']}").status_code == 204
    assert starts(store, cat["service"]) == before


@pytest.fixture
def redis_overrides(google: FakeGoogle) -> dict[str, Any]:
    if not REDIS_URL:
        pytest.skip("CONSULTBOOK_TEST_REDIS_URL is not set")
    return {**google_config(google), "redis_url": REDIS_URL, "freebusy_ttl_seconds": 60}


@pytest.fixture
def redis_client() -> Iterator[Any]:
    if not REDIS_URL:
        pytest.skip("CONSULTBOOK_TEST_REDIS_URL is not set")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter("consultbook:freebusy:*"):
        client.delete(key)
    yield client
    client.close()


@pytest.mark.redis
class TestRedisCache:
    @pytest.fixture
    def overrides(self, redis_overrides: dict[str, Any]) -> dict[str, Any]:
        return redis_overrides

    def test_busy_time_is_shared_through_redis(self, ctx: Context, google_shop: ShopRef,
                                               google: FakeGoogle, admin: Admin,
                                               store: Storefront, redis_client: Any) -> None:
        from engine.services.freebusy import FreeBusy, RedisBusyCache

        assert isinstance(ctx.busy_source, FreeBusy)
        assert isinstance(ctx.busy_source.cache, RedisBusyCache)
        cat = make_catalog(admin)
        google.busy["e0@example.com"] = [(TUESDAY_9_BERLIN,
                                          TUESDAY_9_BERLIN + timedelta(hours=1))]
        first = starts(store, cat["service"])
        assert list(redis_client.scan_iter("consultbook:freebusy:google:*"))
        # Another process (a second FreeBusy on the same Redis) sees the cache.
        other = FreeBusy(ctx.plugins, RedisBusyCache(REDIS_URL))
        with ctx.db.read() as session:
            got = other(session, google_shop.id, {cat["expert"]: "e0@example.com"},
                        int(TUESDAY_9_BERLIN.timestamp()),
                        int(TUESDAY_9_BERLIN.timestamp()) + 7200)
        other.cache.close()  # type: ignore[attr-defined]
        assert got[cat["expert"]] == [(int(TUESDAY_9_BERLIN.timestamp()),
                                       int(TUESDAY_9_BERLIN.timestamp()) + 3600)]
        assert len(google.calls("POST", "/freeBusy$")) == 1
        assert "2026-12-01T08:00:00Z" not in first


def test_two_workers_recording_one_experts_health_at_once_both_succeed(
        ctx: Context, shop: ShopRef, admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    """Two web workers (here: two FreeBusy instances, each with its own memo) find no
    health row and record it at the same moment: an upsert, not an insert that loses
    with a unique violation (which used to log a traceback per request under load)."""
    import threading

    from engine.services.freebusy import FreeBusy
    from engine.store.providers_models import FreeBusyHealth

    cat = make_catalog(admin)
    source = ctx.busy_source
    assert isinstance(source, FreeBusy)
    workers = [FreeBusy(ctx.plugins) for _ in range(6)]
    gate = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def record(fb: FreeBusy, state: str) -> None:
        gate.wait()
        try:
            fb._record(shop.id, "google", {cat["expert"]: (state, "why", None)}, 1.0)
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(fb, "hidden" if i % 2 else "stale"))
               for i, fb in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # (_record swallows a failure -- health is advisory -- and logs it: none may be.)
    assert not [r for r in caplog.records if "could not record" in r.getMessage()]
    with ctx.db.read() as session:
        (row,) = session.query(FreeBusyHealth).all()
    assert row.status in ("hidden", "stale") and row.provider == "google"
