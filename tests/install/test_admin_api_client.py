"""The GraphQL Admin API client against the fake Shopify: versioning, throttling,
429 Retry-After, 5xx retries, timeouts, and the operations the app needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engine.shopify.admin_api import (
    AdminApi,
    AdminApiAuthError,
    AdminApiError,
    AdminApiUserError,
    order_gid,
    retry_after_seconds,
    throttle_wait,
)
from engine.shopify.oauth import ShopifyUnavailable
from tests.install.conftest import SHOP
from tests.install.fake_shopify import FakeShopify


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def token(fake: FakeShopify) -> str:
    return str(fake._issue(True)["access_token"])


@pytest.fixture
def api(fake: FakeShopify, token: str, waits: list[float]) -> Iterator[AdminApi]:
    with AdminApi(SHOP, token, origin=fake.origin, sleep=waits.append) as client:
        yield client


def test_queries_go_to_the_versioned_endpoint_with_the_token(
        api: AdminApi, fake: FakeShopify, token: str) -> None:
    assert api.shop_timezone() == "Europe/Berlin"
    [call] = fake.calls
    assert call.version == "2026-10" and call.token == token


def test_the_api_version_is_configurable(fake: FakeShopify, token: str) -> None:
    with AdminApi(SHOP, token, origin=fake.origin, api_version="2027-01") as client:
        client.shop_timezone()
    assert fake.calls[-1].version == "2027-01"
    with pytest.raises(ValueError):
        AdminApi(SHOP, token, api_version="latest")


def test_graphql_throttling_waits_for_the_bucket_to_refill(
        api: AdminApi, fake: FakeShopify, waits: list[float]) -> None:
    fake.plan.extend(["throttle", "throttle"])
    assert api.shop_timezone() == "Europe/Berlin"
    # (requestedQueryCost 100 - currentlyAvailable 40) / restoreRate 50 = 1.2 s
    assert waits == [pytest.approx(1.2), pytest.approx(1.2)]
    assert len(fake.calls) == 3


def test_http_429_waits_retry_after(api: AdminApi, fake: FakeShopify,
                                    waits: list[float]) -> None:
    fake.plan.append("429")
    api.tag_order("gid://shopify/Order/7", ["consultbook"])
    assert waits == [2.0]
    assert fake.tags == [("gid://shopify/Order/7", ["consultbook"])]


def test_throttling_is_retried_even_for_unsafe_requests(
        api: AdminApi, fake: FakeShopify, waits: list[float]) -> None:
    fake.plan.extend(["429", "throttle"])
    api.graphql("query { shop { ianaTimezone } }", retry_unsafe=False)
    assert len(waits) == 2


def test_5xx_is_retried_with_growing_backoff(api: AdminApi, fake: FakeShopify,
                                             waits: list[float]) -> None:
    fake.plan.extend(["500", "500", "500"])
    assert api.shop_timezone() == "Europe/Berlin"
    assert len(waits) == 3
    assert waits[0] < waits[1] < waits[2]


def test_5xx_gives_up_after_max_attempts(api: AdminApi, fake: FakeShopify) -> None:
    fake.plan.extend(["500"] * 10)
    with pytest.raises(ShopifyUnavailable):
        api.shop_timezone()
    assert len(fake.calls) == api.max_attempts


def test_an_unsafe_request_is_not_repeated_after_a_5xx(
        api: AdminApi, fake: FakeShopify) -> None:
    fake.plan.append("500")
    with pytest.raises(ShopifyUnavailable):
        api.graphql("mutation { x }", retry_unsafe=False)
    assert len(fake.calls) == 1


def test_a_read_timeout_is_retried(fake: FakeShopify, token: str,
                                   waits: list[float]) -> None:
    fake.plan.append("hang")
    fake.hang_seconds = 0.6
    with AdminApi(SHOP, token, origin=fake.origin, timeout=(2.0, 0.2),
                  sleep=waits.append) as client:
        assert client.shop_timezone() == "Europe/Berlin"
    assert len(fake.calls) == 2 and len(waits) == 1


def test_a_refused_token_is_an_auth_error(fake: FakeShopify) -> None:
    with AdminApi(SHOP, "shpat_unknown", origin=fake.origin) as client, \
            pytest.raises(AdminApiAuthError):
        client.shop_timezone()


def test_a_401_asks_once_for_a_fresh_token(fake: FakeShopify, token: str) -> None:
    asked: list[int] = []

    def fresh() -> str:
        asked.append(1)
        return token

    with AdminApi(SHOP, "shpat_stale", origin=fake.origin, on_unauthorized=fresh) as client:
        assert client.shop_timezone() == "Europe/Berlin"
    assert asked == [1]
    assert [c.token for c in fake.calls] == ["shpat_stale", token]


def test_user_errors_are_reported(api: AdminApi) -> None:
    with pytest.raises(AdminApiUserError) as info:
        api.tag_order(1, ["x" * 41])
    assert info.value.errors[0]["message"] == "Tag is too long"


def test_graphql_errors_are_reported(api: AdminApi) -> None:
    with pytest.raises(AdminApiError):
        api.graphql("query { nothing }")


def test_refund_uses_the_suggested_transactions_and_an_idempotency_key(
        api: AdminApi, fake: FakeShopify) -> None:
    result = api.refund_line_items(
        1001, [{"line_item_id": 55, "quantity": 1}], "EUR",
        idempotency_key="consultbook-refund-1001-55", note="The slot was taken")
    assert result == {"refund_id": "gid://shopify/Refund/1", "amount": "50.00",
                      "currency": "EUR"}
    refund = fake.refunds["consultbook-refund-1001-55"]["input"]
    assert refund["orderId"] == "gid://shopify/Order/1001"
    assert refund["refundLineItems"] == [{"lineItemId": "gid://shopify/LineItem/55",
                                          "quantity": 1, "restockType": "NO_RESTOCK"}]
    assert refund["transactions"] == [{
        "orderId": "gid://shopify/Order/1001", "gateway": "bogus", "kind": "REFUND",
        "amount": "50.0", "parentId": "gid://shopify/OrderTransaction/9"}]
    # The same key again is the same refund, not a second one.
    again = api.refund_line_items(1001, [{"line_item_id": 55, "quantity": 1}], "EUR",
                                  idempotency_key="consultbook-refund-1001-55")
    assert again["refund_id"] == "gid://shopify/Refund/1"
    assert len(fake.refunds) == 1


def test_refund_input_is_checked_before_anything_is_sent(
        api: AdminApi, fake: FakeShopify) -> None:
    with pytest.raises(ValueError):
        api.refund_line_items(1, [{"line_item_id": 2}], "EUR", idempotency_key='a") {x')
    with pytest.raises(ValueError):
        api.refund_line_items(1, [{"line_item_id": 2, "quantity": 0}], "EUR",
                              idempotency_key="k")
    with pytest.raises(ValueError):
        api.refund_line_items(1, [], "eur", idempotency_key="k")
    assert fake.calls == []


def test_helpers() -> None:
    assert order_gid(5) == order_gid("5") == order_gid("gid://shopify/Order/5")
    with pytest.raises(ValueError):
        order_gid("5 OR 1")
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) == retry_after_seconds("Wed, 21 Oct") == 1.0
    assert throttle_wait({"cost": {"requestedQueryCost": 10, "throttleStatus": {
        "currentlyAvailable": 50, "restoreRate": 50}}}) == 0.1
    assert throttle_wait(None) == 1.0
