"""Expiring offline tokens: refresh before expiry, single-use refresh tokens, one
refresher at a time, and a refused refresh surfaced to the merchant."""

from __future__ import annotations

import threading
from datetime import timedelta

import falcon.testing
import pytest
from sqlalchemy import select

from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.services import install
from engine.services.install import (
    ShopifyReauthRequired,
    ShopifyUnavailable,
    access_token,
    refresh_token_aad,
    shopify_status,
)
from engine.services.shops import ShopRef, access_token_aad
from engine.store.models import Shop
from tests.install.conftest import SHOP, session_token
from tests.install.fake_shopify import FakeShopify


@pytest.fixture
def connected(client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> ShopRef:
    """A shop installed through token exchange, holding an expiring token pair."""
    result = client.simulate_post("/auth/token-exchange",
                                  headers={"Authorization": f"Bearer {session_token(ctx)}"})
    assert result.status_code == 200, result.text
    with ctx.db.read() as session:
        shop = session.scalars(select(Shop).where(Shop.domain == SHOP)).one()
        return ShopRef(shop.id, shop.domain, shop.timezone)


def shop_row(ctx: Context, ref: ShopRef) -> Shop:
    with ctx.db.read() as session:
        row = session.get(Shop, ref.id)
        assert row is not None
        session.expunge(row)
        return row


def status(ctx: Context, ref: ShopRef) -> dict[str, object]:
    with ctx.db.read() as session:
        return shopify_status(session, ref)


def test_a_fresh_token_is_returned_without_refreshing(
        ctx: Context, fake: FakeShopify, connected: ShopRef) -> None:
    assert access_token(ctx, connected.id) == fake.issued[-1]["access_token"]
    assert fake.grants_of("refresh") == []


def test_the_token_is_refreshed_before_it_expires(
        ctx: Context, clock: FixedClock, fake: FakeShopify, connected: ShopRef) -> None:
    first = fake.issued[-1]
    clock.advance(56 * 60)  # four minutes left: inside the five-minute margin
    token = access_token(ctx, connected.id)
    [grant] = fake.grants_of("refresh")
    assert grant.body["refresh_token"] == first["refresh_token"]
    second = fake.issued[-1]
    assert token == second["access_token"] != first["access_token"]
    row = shop_row(ctx, connected)
    assert ctx.keyring.decrypt_str(row.refresh_token or "",
                                   aad=refresh_token_aad(row.id)) == second["refresh_token"]
    assert second["refresh_token"] not in (row.refresh_token or "")
    assert second["access_token"] not in (row.access_token or "")
    assert row.access_token_expires_at == clock.now() + timedelta(hours=1)
    # Good for another hour now: no second refresh.
    assert access_token(ctx, connected.id) == token
    assert len(fake.grants_of("refresh")) == 1


def test_a_reused_refresh_token_is_rejected_and_surfaced(
        client: falcon.testing.TestClient, ctx: Context, clock: FixedClock,
        fake: FakeShopify, connected: ShopRef) -> None:
    stale_pair = shop_row(ctx, connected)
    clock.advance(56 * 60)
    access_token(ctx, connected.id)  # spends the first refresh token
    # A process that kept the old pair writes it back (a lost update)...
    with ctx.db.write() as session:
        row = session.get(Shop, connected.id)
        assert row is not None
        row.refresh_token = stale_pair.refresh_token
        row.access_token = stale_pair.access_token
        row.access_token_expires_at = stale_pair.access_token_expires_at
    # ...so the next refresh spends a used refresh token: Shopify refuses it.
    with pytest.raises(ShopifyReauthRequired):
        access_token(ctx, connected.id)
    refused = fake.grants_of("refresh")[-1]
    assert refused.status == 400
    assert refused.body["refresh_token"] == fake.grants_of("refresh")[0].body["refresh_token"]

    seen = status(ctx, connected)
    assert seen["status"] == "needs_reauth" and seen["connected"] is False
    assert "invalid_grant" in str(seen["last_error"])
    assert seen["last_error_at"] == "2026-11-30T12:56:00Z"
    # Every later call fails fast, without spending anything at Shopify.
    with pytest.raises(ShopifyReauthRequired):
        access_token(ctx, connected.id)
    assert len(fake.grants_of("refresh")) == 2
    # Opening the app in the admin (token exchange) reconnects the shop.
    fake.now = int(clock.now().timestamp())
    result = client.simulate_post("/auth/token-exchange",
                                  headers={"Authorization": f"Bearer {session_token(ctx)}"})
    assert result.status_code == 200 and result.json["status"] == "connected"
    assert access_token(ctx, connected.id) == fake.issued[-1]["access_token"]


def test_concurrent_refreshers_spend_the_refresh_token_once(
        ctx: Context, clock: FixedClock, fake: FakeShopify, connected: ShopRef) -> None:
    fake.refresh_delay = 0.3
    clock.advance(58 * 60)
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(5)

    def run() -> None:
        barrier.wait()
        try:
            results.append(access_token(ctx, connected.id))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(fake.grants_of("refresh")) == 1
    assert all(g.status == 200 for g in fake.grants)
    assert set(results) == {fake.issued[-1]["access_token"]}
    row = shop_row(ctx, connected)
    assert row.auth_error is None and row.token_lease is None


def test_an_expired_refresh_token_needs_reauth_without_calling_shopify(
        ctx: Context, clock: FixedClock, fake: FakeShopify, connected: ShopRef) -> None:
    clock.advance(91 * 24 * 3600)
    with pytest.raises(ShopifyReauthRequired):
        access_token(ctx, connected.id)
    assert fake.grants_of("refresh") == []
    assert status(ctx, connected)["status"] == "needs_reauth"


def test_shopify_down_during_refresh_keeps_the_current_token_while_it_lasts(
        ctx: Context, clock: FixedClock, fake: FakeShopify, connected: ShopRef) -> None:
    current = fake.issued[-1]["access_token"]
    ctx.config = ctx.config.with_(origins={"shopify_admin": "http://127.0.0.1:9"})
    clock.advance(57 * 60)
    assert access_token(ctx, connected.id) == current  # still valid for three minutes
    clock.advance(4 * 60)
    with pytest.raises(ShopifyUnavailable):
        access_token(ctx, connected.id)
    assert status(ctx, connected)["status"] == "connected"  # transient: not a re-auth


def test_the_beat_pass_refreshes_tokens_about_to_expire(
        ctx: Context, clock: FixedClock, fake: FakeShopify, connected: ShopRef) -> None:
    assert install.refresh_expiring_tokens(ctx) == 0
    clock.advance(52 * 60)
    assert install.refresh_expiring_tokens(ctx) == 1
    assert len(fake.grants_of("refresh")) == 1
    assert install.refresh_expiring_tokens(ctx) == 0


def test_a_revoked_access_token_is_refreshed_once_by_the_admin_client(
        ctx: Context, fake: FakeShopify, connected: ShopRef) -> None:
    fake.revoke(fake.issued[-1]["access_token"])
    with install.admin_client(ctx, connected.id, sleep=lambda s: None) as api:
        api.tag_order(1001, ["consultbook"])
    assert fake.tags == [("gid://shopify/Order/1001", ["consultbook"])]
    assert len(fake.grants_of("refresh")) == 1
    assert fake.calls[-1].token == fake.issued[-1]["access_token"]


def test_uninstall_forgets_the_tokens(ctx: Context, connected: ShopRef) -> None:
    with ctx.db.write() as session:
        install.forget_tokens(session, connected.id)
    row = shop_row(ctx, connected)
    assert row.access_token is None and row.refresh_token is None
    assert status(ctx, connected)["status"] == "not_connected"
    with pytest.raises(ShopifyReauthRequired):
        access_token(ctx, connected.id)


def test_a_token_under_a_removed_key_needs_reauth(
        ctx: Context, fake: FakeShopify, connected: ShopRef) -> None:
    with ctx.db.write() as session:
        row = session.get(Shop, connected.id)
        assert row is not None
        row.access_token = ctx.keyring.encrypt("x", aad=access_token_aad("another-shop"))
    with pytest.raises(ShopifyReauthRequired):
        access_token(ctx, connected.id)
    assert status(ctx, connected)["status"] == "needs_reauth"
