"""``GET /auth/install`` and ``GET /auth/callback`` against the fake Shopify."""

from __future__ import annotations

import base64
import socket
import threading
from urllib.parse import parse_qs, urlsplit

import falcon.testing
import pytest
from sqlalchemy import select

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.services.install import refresh_token_aad
from engine.services.shops import access_token_aad
from engine.store.models import Shop
from engine.store.providers_models import OAuthState
from tests.conftest import API_KEY, make_config
from tests.install.conftest import APP_URL, SHOP, signed
from tests.install.fake_shopify import FakeShopify
from web.app import create_app

HOST = base64.b64encode(b"admin.shopify.com/store/alpha").decode().rstrip("=")


def start(client: falcon.testing.TestClient, shop: str = SHOP) -> str:
    """Run /auth/install and return the state it sent to Shopify."""
    result = client.simulate_get("/auth/install", query_string=signed(
        {"shop": shop, "timestamp": "1796040000", "host": HOST}))
    assert result.status_code == 302, result.text
    return parse_qs(urlsplit(result.headers["Location"]).query)["state"][0]


def callback(client: falcon.testing.TestClient, state: str, code: str,
             shop: str = SHOP, **extra: str) -> falcon.testing.Result:
    params = {"code": code, "shop": shop, "state": state, "timestamp": "1796040000",
              "host": HOST, **extra}
    return client.simulate_get("/auth/callback", query_string=signed(params))


def stored(ctx: Context, domain: str = SHOP) -> Shop:
    with ctx.db.read() as session:
        row = session.scalars(select(Shop).where(Shop.domain == domain)).one()
        session.expunge(row)
        return row


def test_install_redirects_to_shopify_authorization_with_a_stored_state(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    result = client.simulate_get("/auth/install", query_string=signed(
        {"shop": SHOP, "timestamp": "1796040000"}))
    assert result.status_code == 302
    location = urlsplit(result.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == fake.origin  # the configured origin
    assert location.path == "/admin/oauth/authorize"
    query = parse_qs(location.query)
    assert query["client_id"] == [API_KEY]
    assert query["scope"] == ["read_orders,write_orders,read_products,read_themes"]
    assert query["redirect_uri"] == [f"{APP_URL}/auth/callback"]
    assert "grant_options[]" not in query  # offline access
    state = query["state"][0]
    assert len(state) >= 32
    with ctx.db.read() as session:
        rows = session.scalars(select(OAuthState)).all()
    assert len(rows) == 1
    assert rows[0].id != state  # only the hash is stored
    assert rows[0].shop_domain == SHOP
    assert result.headers["Cache-Control"] == "no-store"


def test_install_happy_path_stores_the_token_encrypted(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    state = start(client)
    code = fake.add_code(SHOP)
    result = callback(client, state, code)
    assert result.status_code == 302, result.text
    assert result.headers["Location"] == f"https://admin.shopify.com/store/alpha/apps/{API_KEY}"

    [grant] = fake.grants_of("code")
    assert grant.body["code"] == code and str(grant.body["expiring"]) == "1"
    issued = fake.issued[-1]
    row = stored(ctx)
    assert row.installed and row.timezone == "Europe/Berlin"  # from the Admin API
    # The columns hold ciphertext, never the tokens themselves.
    assert row.access_token is not None and row.refresh_token is not None
    assert issued["access_token"] not in row.access_token
    assert issued["refresh_token"] not in row.refresh_token
    assert row.access_token.startswith("v1.") and row.refresh_token.startswith("v1.")
    assert ctx.keyring.decrypt_str(row.access_token,
                                   aad=access_token_aad(row.id)) == issued["access_token"]
    assert ctx.keyring.decrypt_str(row.refresh_token,
                                   aad=refresh_token_aad(row.id)) == issued["refresh_token"]
    now = ctx.clock.now()
    assert (row.access_token_expires_at - now).total_seconds() == 3600
    assert (row.refresh_token_expires_at - now).total_seconds() == 90 * 24 * 3600
    assert row.scopes == "read_orders,write_orders,read_products"
    assert row.auth_error is None
    # The timezone query used the offline token on the configured API version.
    assert fake.calls[-1].token == issued["access_token"]
    assert fake.calls[-1].version == "2026-10"


def test_callback_without_host_redirects_to_the_shop_admin(
        client: falcon.testing.TestClient, fake: FakeShopify) -> None:
    state = start(client)
    params = {"code": fake.add_code(SHOP), "shop": SHOP, "state": state,
              "timestamp": "1796040000"}
    result = client.simulate_get("/auth/callback", query_string=signed(params))
    assert result.headers["Location"] == f"https://{SHOP}/admin/apps/{API_KEY}"


def test_callback_with_a_foreign_host_does_not_redirect_there(
        client: falcon.testing.TestClient, fake: FakeShopify) -> None:
    state = start(client)
    evil = base64.b64encode(b"evil.example.com/admin").decode()
    result = callback(client, state, fake.add_code(SHOP), host=evil)
    assert result.headers["Location"] == f"https://{SHOP}/admin/apps/{API_KEY}"


@pytest.mark.parametrize("path", ["/auth/install", "/auth/callback"])
def test_bad_hmac_is_refused_with_401(client: falcon.testing.TestClient, path: str) -> None:
    query = signed({"shop": SHOP, "timestamp": "1796040000", "code": "x", "state": "y"},
                   secret="shpss_not_the_app_secret")
    result = client.simulate_get(path, query_string=query)
    assert result.status_code == 401
    assert result.json["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize("path", ["/auth/install", "/auth/callback"])
def test_missing_hmac_is_refused_with_401(client: falcon.testing.TestClient, path: str) -> None:
    result = client.simulate_get(path, query_string=f"shop={SHOP}&code=x&state=y")
    assert result.status_code == 401
    assert result.json["error"]["code"] == "invalid_signature"


def test_tampered_query_is_refused(client: falcon.testing.TestClient, ctx: Context) -> None:
    query = signed({"shop": SHOP, "timestamp": "1796040000"})
    result = client.simulate_get("/auth/install",
                                 query_string=query.replace("alpha", "gamma"))
    assert result.status_code == 401
    with ctx.db.read() as session:
        assert session.scalars(select(OAuthState)).all() == []


@pytest.mark.parametrize("shop", [
    "evil.com", "Alpha.myshopify.com", "alpha.myshopify.com.evil.com", "",
    "-alpha.myshopify.com", "alpha.myshopify.com/admin", "alpha.myshopify.com:443",
    "https://alpha.myshopify.com", "al pha.myshopify.com",
])
@pytest.mark.parametrize("path", ["/auth/install", "/auth/callback"])
def test_bad_shop_domain_is_refused_with_400(
        client: falcon.testing.TestClient, fake: FakeShopify, path: str, shop: str) -> None:
    result = client.simulate_get(path, query_string=signed(
        {"shop": shop, "timestamp": "1796040000", "code": "c", "state": "s"}))
    assert result.status_code == 400
    assert result.json["error"]["code"] == "invalid_shop"
    assert fake.grants == []


def test_missing_shop_is_refused_with_400(client: falcon.testing.TestClient) -> None:
    result = client.simulate_get("/auth/install",
                                 query_string=signed({"timestamp": "1796040000"}))
    assert result.status_code == 400
    assert result.json["error"]["code"] == "invalid_shop"


def test_replayed_state_is_refused_and_the_code_is_not_exchanged_twice(
        client: falcon.testing.TestClient, fake: FakeShopify) -> None:
    state = start(client)
    assert callback(client, state, fake.add_code(SHOP)).status_code == 302
    replay = callback(client, state, fake.add_code(SHOP))
    assert replay.status_code == 403
    assert replay.json["error"]["code"] == "invalid_state"
    assert "already used" in replay.json["error"]["message"]
    assert len(fake.grants_of("code")) == 1


def test_expired_state_is_refused(client: falcon.testing.TestClient, clock: FixedClock,
                                  fake: FakeShopify) -> None:
    state = start(client)
    clock.advance(10 * 60 + 1)
    result = callback(client, state, fake.add_code(SHOP))
    assert result.status_code == 403
    assert result.json["error"]["code"] == "invalid_state"
    assert "expired" in result.json["error"]["message"]
    assert fake.grants == []


def test_state_issued_for_another_shop_is_refused(
        client: falcon.testing.TestClient, fake: FakeShopify) -> None:
    state = start(client, "gamma.myshopify.com")
    result = callback(client, state, fake.add_code(SHOP))
    assert result.status_code == 403
    assert "another shop" in result.json["error"]["message"]


@pytest.mark.parametrize("state", ["never-issued", ""])
def test_unknown_or_missing_state_is_refused(client: falcon.testing.TestClient,
                                             fake: FakeShopify, state: str) -> None:
    result = callback(client, state, fake.add_code(SHOP))
    assert result.status_code == 403
    assert result.json["error"]["code"] == "invalid_state"


def test_missing_code_is_a_400(client: falcon.testing.TestClient) -> None:
    state = start(client)
    result = client.simulate_get("/auth/callback", query_string=signed(
        {"shop": SHOP, "state": state, "timestamp": "1796040000"}))
    assert result.status_code == 400


def test_a_bad_hmac_does_not_spend_the_state(client: falcon.testing.TestClient,
                                             fake: FakeShopify) -> None:
    state = start(client)
    bad = signed({"code": "x", "shop": SHOP, "state": state, "timestamp": "1"},
                 secret="shpss_wrong")
    assert client.simulate_get("/auth/callback", query_string=bad).status_code == 401
    assert callback(client, state, fake.add_code(SHOP)).status_code == 302


def test_racing_callbacks_with_one_state_install_once(
        client: falcon.testing.TestClient, fake: FakeShopify) -> None:
    state = start(client)
    codes = [fake.add_code(SHOP) for _ in range(4)]
    statuses: list[int] = []
    barrier = threading.Barrier(len(codes))

    def run(code: str) -> None:
        barrier.wait()
        statuses.append(callback(client, state, code).status_code)

    threads = [threading.Thread(target=run, args=(c,)) for c in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [302, 403, 403, 403]
    assert len(fake.grants_of("code")) == 1


def test_a_code_shopify_refuses_is_a_401_and_stores_nothing(
        client: falcon.testing.TestClient, ctx: Context) -> None:
    state = start(client)
    result = callback(client, state, "not-a-code-shopify-issued")
    assert result.status_code == 401
    assert result.json["error"]["code"] == "invalid_grant"
    with ctx.db.read() as session:
        assert session.scalars(select(Shop)).all() == []


def test_timezone_defaults_to_utc_when_the_admin_api_fails(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    fake.plan.extend(["500"] * 5)
    state = start(client)
    assert callback(client, state, fake.add_code(SHOP)).status_code == 302
    assert stored(ctx).timezone == "UTC"


def test_timezone_defaults_when_shopify_names_an_unknown_zone(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    fake.timezone = "Mars/Olympus_Mons"
    state = start(client)
    assert callback(client, state, fake.add_code(SHOP)).status_code == 302
    assert stored(ctx).timezone == "UTC"


def test_reinstall_of_an_installed_shop_keeps_its_timezone(
        client: falcon.testing.TestClient, ctx: Context, fake: FakeShopify) -> None:
    assert callback(client, start(client), fake.add_code(SHOP)).status_code == 302
    fake.timezone = "Asia/Tokyo"
    first = stored(ctx)
    assert callback(client, start(client), fake.add_code(SHOP)).status_code == 302
    second = stored(ctx)
    assert second.id == first.id and second.timezone == "Europe/Berlin"
    assert second.access_token != first.access_token


def test_shopify_unreachable_is_a_502(db_url: str, clock: FixedClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = make_config(db_url, app_url=APP_URL,
                         origins={"shopify_admin": f"http://127.0.0.1:{port}"})
    context = bootstrap(config, clock=clock)
    try:
        client = falcon.testing.TestClient(create_app(context))
        state = start(client)
        result = callback(client, state, "any-code")
        assert result.status_code == 502
        assert result.json["error"]["code"] == "shopify_unavailable"
    finally:
        context.db.dispose()
