"""A shop's provider instance is not rebuilt (credentials decrypted) on every request.

The first request's Google provider refreshes its access token and saves it (the
connection's ``save``): that keeps the instance (it holds the new token), so it costs no
second decrypt.

The availability path builds the shop's calendar provider through
:class:`engine.services.provider_cache.ProviderInstances`: one build per (shop and its
provider choice, provider class, connection version) per TTL. Counted here by wrapping
the keyring's ``decrypt_str`` for connection credentials over 100 storefront requests of
a Google shop (real plugin, fake Google over HTTP), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.bootstrap import Context
from engine.providers.errors import ConnectionBroken
from engine.services.connections import mark_broken
from engine.services.freebusy import FreeBusy
from engine.services.provider_cache import ProviderInstances
from engine.services.shops import ShopRef
from tests.conftest import Admin, Storefront, make_catalog
from tests.fakes.google import FakeGoogle
from tests.plugins.conftest import connect, ctx, google, google_config, set_providers

__all__ = ["ctx", "google"]  # fixtures used from the plugin suite


@pytest.fixture
def overrides(google: FakeGoogle) -> dict[str, Any]:
    return {**google_config(google), "freebusy_ttl_seconds": 600,
            "freebusy_max_stale_seconds": 900, "provider_attempts": 1,
            "provider_timeout_seconds": 2.0}


@pytest.fixture
def google_shop(ctx: Context, shop: ShopRef, google: FakeGoogle) -> ShopRef:
    connect(ctx, shop, "google", {"refresh_token": google.issue_refresh_token()})
    set_providers(ctx, shop, calendar="google", video="meet")
    return shop


class Decrypts:
    """Counts decryptions of connection credentials (the cost being avoided)."""

    def __init__(self, ctx: Context) -> None:
        self.count = 0
        keyring = ctx.plugins.keyring
        original = keyring.decrypt_str

        def counting(token: str, *, aad: str) -> str:
            if aad.startswith("connection:") and aad.endswith(":credentials"):
                self.count += 1
            return original(token, aad=aad)

        self._restore = lambda: setattr(keyring, "decrypt_str", original)
        keyring.decrypt_str = counting  # type: ignore[method-assign]

    def close(self) -> None:
        self._restore()


@pytest.fixture
def decrypts(ctx: Context) -> Iterator[Decrypts]:
    counter = Decrypts(ctx)
    yield counter
    counter.close()


@pytest.fixture
def clock_s() -> list[float]:
    return [1000.0]


@pytest.fixture
def instances(ctx: Context, clock_s: list[float]) -> ProviderInstances:
    """The availability path's instance cache, on a clock the test moves."""
    assert isinstance(ctx.busy_source, FreeBusy)
    cache = ProviderInstances(ctx.plugins, ttl=30.0, clock=lambda: clock_s[0])
    ctx.busy_source.providers = cache
    return cache


def view(store: Storefront, service: str) -> list[str]:
    got = store.get("/availability", {"service": service, "start": "2026-12-01",
                                      "days": "7"})
    assert got.status_code == 200, got.text
    return [s["start"] for s in got.json["slots"]]


def test_100_availability_requests_decrypt_once_per_ttl(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront, decrypts: Decrypts, instances: ProviderInstances,
        clock_s: list[float]) -> None:
    cat = make_catalog(admin)
    google.busy["e0@example.com"] = []
    first = view(store, cat["service"])
    assert first
    assert decrypts.count == 1
    for _ in range(99):
        clock_s[0] += 0.2  # 100 requests over 20 s: within one TTL
        assert view(store, cat["service"]) == first
    assert decrypts.count == 1
    assert instances.builds == 1
    clock_s[0] += 30  # the TTL passed: built once more
    view(store, cat["service"])
    assert decrypts.count == 2


def test_before_the_cache_every_request_decrypted(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront, decrypts: Decrypts, instances: ProviderInstances) -> None:
    """The baseline the cache removes (TTL 0 = build per request, as before)."""
    instances.ttl = 0.0
    cat = make_catalog(admin)
    google.busy["e0@example.com"] = []
    for _ in range(100):
        view(store, cat["service"])
    assert decrypts.count == 100


def test_a_connection_change_rebuilds_at_once(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront, decrypts: Decrypts, instances: ProviderInstances) -> None:
    cat = make_catalog(admin)
    google.busy["e0@example.com"] = []
    assert view(store, cat["service"])
    old = instances.get(*_google(ctx, google_shop))
    # Broken: the cached instance (with the revoked grant) is not handed out again.
    mark_broken(ctx.plugins, google_shop, "google", "revoked")
    with pytest.raises(ConnectionBroken):
        instances.get(*_google(ctx, google_shop))
    # Reconnected (new credentials): a new instance with them.
    connect(ctx, google_shop, "google", {"refresh_token": google.issue_refresh_token()})
    before = decrypts.count
    assert view(store, cat["service"])
    assert decrypts.count == before + 1
    assert instances.get(*_google(ctx, google_shop)) is not old


def test_another_process_changing_the_connection_is_seen(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront, instances: ProviderInstances) -> None:
    """The version is read from the database (through the 1 s read cache), so a change
    written by another process is seen without this process writing anything."""
    from sqlalchemy import update

    from engine.store.providers_models import ProviderConnection

    cls, sp = _google(ctx, google_shop)
    first = instances.get(cls, sp)
    assert instances.get(cls, sp) is first
    # "Another process": a write this process's read cache does not know about.
    with ctx.db.write(keep_cache=True) as session:
        session.execute(update(ProviderConnection)
                        .where(ProviderConnection.shop_id == google_shop.id)
                        .values(connected_at=ctx.clock.now().replace(year=2027)))
    assert instances.get(cls, sp) is first  # within the read cache's second
    ctx.db.cache.clear()  # ... which has passed
    assert instances.get(cls, sp) is not first


def test_invalidate_and_settings_change(
        ctx: Context, google_shop: ShopRef, google: FakeGoogle, admin: Admin,
        store: Storefront, instances: ProviderInstances, decrypts: Decrypts) -> None:
    cls, sp = _google(ctx, google_shop)
    first = instances.get(cls, sp)
    instances.invalidate(google_shop.id)
    assert instances.get(cls, sp) is not first
    n = decrypts.count
    instances.invalidate("shop_other")
    instances.get(cls, sp)
    assert decrypts.count == n
    # A changed provider choice is another key: the shop's next view uses the new one.
    set_providers(ctx, google_shop, calendar="local")
    assert ctx.plugins.shop_providers(google_shop.id).choice.calendar == "local"


def test_build_failures_are_not_cached(ctx: Context, shop: ShopRef,
                                       instances: ProviderInstances) -> None:
    from engine.providers.errors import ProviderNotConfigured

    set_providers(ctx, shop, calendar="google")
    cls, sp = _google(ctx, shop)
    for _ in range(2):
        with pytest.raises(ProviderNotConfigured):
            instances.get(cls, sp)
    assert instances.builds == 0


def _google(ctx: Context, shop: ShopRef) -> tuple[Any, Any]:
    sp = ctx.plugins.shop_providers(shop.id)
    return ctx.plugins.registry.get("calendar", "google"), sp
