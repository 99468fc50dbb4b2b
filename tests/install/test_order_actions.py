"""What consultbook tells Shopify about orders, through the outbox, against the fake
Shopify over real HTTP: a booked order is tagged; with auto-refund on, a line item that
cannot be honoured is refunded once (refundCreate with an idempotency key)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.services import outbox
from engine.services.shops import install_shop
from engine.store.models import OutboxItem
from tests.conftest import Admin, Storefront, make_catalog, make_config, order_payload
from tests.install.conftest import APP_URL
from tests.install.fake_shopify import FakeShopify

TUE_9 = "2026-12-01T08:00:00Z"


@pytest.fixture
def ctx(db_url: str, clock: FixedClock, fake: FakeShopify, tmp_path: Path) -> Iterator[Context]:
    config = make_config(db_url, app_url=APP_URL, origins={"shopify_admin": fake.origin},
                         outbox_dir=str(tmp_path / "outbox"), outbox_retry_seconds=0.0)
    fake.access_tokens.add("shpat_alpha")  # the root `shop` fixture's (non-expiring) token
    context = bootstrap(config, clock=clock)
    yield context
    context.db.dispose()


def relay(ctx: Context) -> None:
    outbox.relay(ctx.db, ctx.clock, ctx.plugins, "test-relay")


def kinds(ctx: Context) -> list[tuple[str, str]]:
    with ctx.db.read() as s:
        return sorted((i.kind, i.status) for i in s.scalars(select(OutboxItem)))


def test_a_booked_order_is_tagged_once(store: Storefront, admin: Admin, ctx: Context,
                                      fake: FakeShopify) -> None:
    cat = make_catalog(admin)
    hold = store.hold(cat["service"], cat["expert"], TUE_9).json["hold"]
    store.webhook("orders/paid", order_payload(4001, [hold]))
    store.webhook("orders/create", order_payload(4001, [hold]))
    relay(ctx)
    relay(ctx)
    assert fake.tags == [("gid://shopify/Order/4001", ["consultbook", f"consultbook-{hold}"])]
    assert ("order.tag", "done") in kinds(ctx)


def test_auto_refund_refunds_an_undeliverable_line_once(store: Storefront, admin: Admin,
                                                        ctx: Context, fake: FakeShopify) -> None:
    assert admin("PATCH", "/settings", {"auto_refund": True}).status_code == 200
    payload = order_payload(4002, ["bk_unknown"], price="50.00")
    store.webhook("orders/paid", payload)
    store.webhook("orders/paid", payload)
    relay(ctx)
    relay(ctx)
    assert list(fake.refunds) == ["consultbook-refund-4002-400200"]
    [entry] = admin("GET", "/refunds").json["refunds"]
    assert entry["shopify_refund"]["status"] == "refunded"
    assert entry["shopify_refund"]["id"].startswith("gid://shopify/Refund/")


def test_without_auto_refund_nothing_is_refunded(store: Storefront, admin: Admin,
                                                  ctx: Context, fake: FakeShopify) -> None:
    store.webhook("orders/paid", order_payload(4003, ["bk_unknown"]))
    relay(ctx)
    assert fake.refunds == {}
    [entry] = admin("GET", "/refunds").json["refunds"]
    assert entry["shopify_refund"] is None


def test_a_shop_without_a_shopify_token_is_not_tagged(client: Any, ctx: Context,
                                                      fake: FakeShopify) -> None:
    install_shop(ctx.db, ctx.clock, ctx.keyring, "tokenless.myshopify.com", "Europe/Berlin")
    admin = Admin(client, ctx, "tokenless.myshopify.com")
    store = Storefront(client, ctx, "tokenless.myshopify.com")
    cat = make_catalog(admin)
    hold = store.hold(cat["service"], cat["expert"], TUE_9).json["hold"]
    store.webhook("orders/paid", order_payload(4004, [hold]))
    relay(ctx)
    assert fake.tags == []
    assert [k for k, _ in kinds(ctx)] == ["booking.confirmed"]


def test_an_outage_seen_while_getting_the_token_is_retried_not_given_up() -> None:
    from engine.providers.errors import ConnectionBroken, ProviderUnavailable
    from engine.services.shopify_actions import _as_provider_error

    for exc in (ProviderUnavailable("down", provider="shopify"),
                ConnectionBroken("reauth", provider="shopify")):
        assert _as_provider_error(exc) is exc
