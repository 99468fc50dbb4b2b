"""``POST /auth/token-exchange``: a session token for an expiring offline token."""

from __future__ import annotations

import falcon.testing
from sqlalchemy import select

from engine.bootstrap import Context
from engine.services.install import refresh_token_aad, shopify_status
from engine.services.shops import ShopRef, access_token_aad, install_shop
from engine.store.models import Shop
from tests.conftest import API_SECRET
from tests.install.conftest import SHOP, session_token
from tests.install.fake_shopify import FakeShopify


def exchange(client: falcon.testing.TestClient, token: str,
             query: str = "") -> falcon.testing.Result:
    return client.simulate_post("/auth/token-exchange", query_string=query,
                                headers={"Authorization": f"Bearer {token}"})


def row(ctx: Context, domain: str = SHOP) -> Shop:
    with ctx.db.read() as session:
        shop = session.scalars(select(Shop).where(Shop.domain == domain)).one()
        session.expunge(shop)
        return shop


def test_token_exchange_installs_a_new_shop_with_an_expiring_token(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    token = session_token(ctx)
    result = exchange(client, token)
    assert result.status_code == 200, result.text
    assert result.json["status"] == "connected"
    assert result.json["expiring_token"] is True
    assert result.json["token_expires_at"] == "2026-11-30T13:00:00Z"

    [grant] = fake.grants_of("token_exchange")
    assert grant.body["subject_token"] == token
    assert grant.body["subject_token_type"] == "urn:ietf:params:oauth:token-type:id_token"
    assert grant.body["requested_token_type"] == \
        "urn:shopify:params:oauth:token-type:offline-access-token"
    assert str(grant.body["expiring"]) == "1"
    issued = fake.issued[-1]
    shop = row(ctx)
    assert shop.installed and shop.timezone == "Europe/Berlin"
    assert issued["access_token"] not in (shop.access_token or "")
    assert ctx.keyring.decrypt_str(shop.access_token or "",
                                   aad=access_token_aad(shop.id)) == issued["access_token"]
    assert ctx.keyring.decrypt_str(shop.refresh_token or "",
                                   aad=refresh_token_aad(shop.id)) == issued["refresh_token"]


def test_a_healthy_shop_is_not_exchanged_again_unless_forced(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    assert exchange(client, session_token(ctx)).status_code == 200
    assert exchange(client, session_token(ctx)).status_code == 200
    assert len(fake.grants_of("token_exchange")) == 1
    assert exchange(client, session_token(ctx), "force=1").status_code == 200
    assert len(fake.grants_of("token_exchange")) == 2


def test_a_shop_on_a_non_expiring_token_moves_to_an_expiring_one(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    ref = install_shop(ctx.db, ctx.clock, ctx.keyring, SHOP, "America/New_York",
                       access_token="shpat_legacy")
    before = row(ctx)
    assert before.access_token_expires_at is None
    result = exchange(client, session_token(ctx))
    assert result.status_code == 200
    after = row(ctx)
    assert after.id == ref.id
    assert after.timezone == "America/New_York"  # an installed shop keeps its timezone
    assert after.access_token_expires_at is not None and after.refresh_token is not None
    assert ctx.keyring.decrypt_str(after.access_token or "", aad=access_token_aad(ref.id)) \
        == fake.issued[-1]["access_token"]


def test_missing_or_bad_session_tokens_are_401(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    assert client.simulate_post("/auth/token-exchange").status_code == 401
    assert exchange(client, "not.a.jwt").status_code == 401
    forged = session_token(ctx).rsplit(".", 1)[0] + ".AAAA"
    assert exchange(client, forged).status_code == 401
    expired = session_token(ctx, ttl=-60)
    assert exchange(client, expired).status_code == 401
    assert fake.grants == []


def test_a_session_token_shopify_refuses_is_a_401(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    fake.now += 3600  # Shopify thinks the token has expired
    result = exchange(client, session_token(ctx))
    assert result.status_code == 401
    assert result.json["error"]["code"] == "invalid_grant"
    with ctx.db.read() as session:
        assert session.scalars(select(Shop)).all() == []


def test_token_exchange_reconnects_a_shop_that_needs_reauth(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    assert exchange(client, session_token(ctx)).status_code == 200
    shop = row(ctx)
    with ctx.db.write() as session:
        target = session.get(Shop, shop.id)
        assert target is not None
        target.auth_error = "Shopify refused to refresh the token (invalid_grant)"
        target.auth_error_at = ctx.clock.now()
    with ctx.db.read() as session:
        assert shopify_status(session, ShopRef(shop.id, SHOP, "UTC"))["status"] == \
            "needs_reauth"
    result = exchange(client, session_token(ctx))
    assert result.status_code == 200
    assert result.json["status"] == "connected" and result.json["last_error"] is None
    assert len(fake.grants_of("token_exchange")) == 2


def test_session_token_for_another_app_is_refused(
        client: falcon.testing.TestClient, ctx: Context) -> None:
    from engine.shopify import encode_session_token

    other = encode_session_token(SHOP, api_key="another-app", api_secret=API_SECRET,
                                 now=int(ctx.clock.now().timestamp()))
    assert exchange(client, other).status_code == 401
