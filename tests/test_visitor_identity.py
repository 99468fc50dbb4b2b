"""Who a storefront visitor is, for the per-visitor hold limit (contract: Storefront).

The signed ``logged_in_customer_id``, else the ``X-Forwarded-For`` entry
``CONSULTBOOK_TRUSTED_PROXY_HOPS`` from the right (entries a client adds on the left
change nothing), else the connecting address. A request that repeats ``shop`` or
``logged_in_customer_id`` is 401 ``invalid_signature``, even when it is signed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import falcon.testing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.bootstrap import Context
from engine.config import from_env
from engine.errors import ConfigError
from engine.shopify import sign_proxy
from tests.conftest import API_SECRET, Admin, Storefront, make_catalog
from web.proxy import visitor_of

STARTS = ["2026-12-01T08:00:00Z", "2026-12-01T08:30:00Z", "2026-12-01T09:00:00Z"]
FOURTH = "2026-12-01T09:30:00Z"
FIFTH = "2026-12-01T10:00:00Z"


def request(xff: str | None, *, signed: dict[str, str] | None = None,
            remote: str = "198.51.100.1") -> falcon.Request:
    headers = {"X-Forwarded-For": xff} if xff is not None else {}
    req = falcon.testing.create_req(headers=headers, remote_addr=remote)
    req.context.signed = signed or {}
    return req


# --- the rule, unit by unit -----------------------------------------------------------


def test_the_signed_customer_wins_over_any_address() -> None:
    req = request("192.0.2.1", signed={"logged_in_customer_id": "77"})
    assert visitor_of(req, 1) == "customer:77"


def test_the_rightmost_entry_is_the_visitor_with_one_trusted_hop() -> None:
    assert visitor_of(request("10.9.9.9, 192.0.2.1"), 1) == "ip:192.0.2.1"
    assert visitor_of(request("192.0.2.1"), 1) == "ip:192.0.2.1"


def test_more_trusted_hops_count_further_from_the_right() -> None:
    # client-added, what the outer proxy saw (the visitor), what our inner proxy saw.
    xff = "6.6.6.6, 192.0.2.1, 10.0.0.5"
    assert visitor_of(request(xff), 2) == "ip:192.0.2.1"
    assert visitor_of(request(xff), 3) == "ip:6.6.6.6"


def test_fewer_entries_than_hops_or_no_hops_or_garbage_mean_the_connecting_address() -> None:
    assert visitor_of(request("192.0.2.1"), 2) == "ip:198.51.100.1"
    assert visitor_of(request("192.0.2.1"), 0) == "ip:198.51.100.1"
    assert visitor_of(request("192.0.2.1, not-an-ip"), 1) == "ip:198.51.100.1"
    assert visitor_of(request(None), 1) == "ip:198.51.100.1"
    assert visitor_of(request(""), 1) == "ip:198.51.100.1"


entry = st.one_of(st.ip_addresses().map(str), st.text(max_size=12).filter(
    lambda s: "," not in s))


@given(st.lists(entry, max_size=6), st.ip_addresses().map(str),
       st.lists(st.ip_addresses().map(str), max_size=3))
def test_entries_a_client_adds_on_the_left_change_nothing(
        spoofed: list[str], visitor: str, ours: list[str]) -> None:
    """Whatever the client writes on the left, the entry ``hops`` from the right (the
    one our first trusted proxy appended) is the visitor."""
    hops = len(ours) + 1
    honest = ", ".join([visitor, *ours])
    forged = ", ".join([*spoofed, visitor, *ours])
    expected = visitor_of(request(honest), hops)
    assert expected.startswith("ip:") and expected != "ip:198.51.100.1"
    assert visitor_of(request(forged), hops) == expected


# --- configuration --------------------------------------------------------------------


def test_trusted_hops_default_and_setting() -> None:
    assert from_env({}, demo=True).trusted_proxy_hops == 1
    assert from_env({"CONSULTBOOK_TRUSTED_PROXY_HOPS": "2"}, demo=True).trusted_proxy_hops == 2
    assert from_env({"CONSULTBOOK_TRUSTED_PROXY_HOPS": "0"}, demo=True).trusted_proxy_hops == 0


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "²", "1_0", "33", "\u0661"])
def test_a_bad_trusted_hops_value_stops_start_up_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env({"CONSULTBOOK_TRUSTED_PROXY_HOPS": value}, demo=True)
    message = str(caught.value)
    assert "CONSULTBOOK_TRUSTED_PROXY_HOPS" in message and "\n" not in message


def test_proxy_prefix_and_metrics_token_are_parsed_and_validated() -> None:
    config = from_env({}, demo=True)
    assert config.proxy_prefix == "/apps/consult" and config.metrics_token is None
    config = from_env({"CONSULTBOOK_PROXY_PREFIX": "/a/book/",
                       "CONSULTBOOK_METRICS_TOKEN": "s3cr3t-token_value"}, demo=True)
    assert config.proxy_prefix == "/a/book" and config.metrics_token == "s3cr3t-token_value"
    for name, value in [("CONSULTBOOK_PROXY_PREFIX", "apps/consult"),
                        ("CONSULTBOOK_PROXY_PREFIX", "/apps/con sult"),
                        ("CONSULTBOOK_PROXY_PREFIX", "https://x/apps"),
                        ("CONSULTBOOK_METRICS_TOKEN", "two words"),
                        ("CONSULTBOOK_METRICS_TOKEN", "caf\u00e9")]:
        with pytest.raises(ConfigError) as caught:
            from_env({name: value}, demo=True)
        assert name in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        from_env({"CONSULTBOOK_METRICS_TOKEN": "bad token"}, demo=True)
    assert "bad token" not in str(caught.value)  # a secret is never echoed


# --- through the App Proxy, on both databases ---------------------------------------------


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)


def test_varying_the_left_entry_does_not_bypass_the_hold_limit(
        store: Storefront, cat: dict[str, Any]) -> None:
    for n, start in enumerate(STARTS):
        r = store.hold(cat["service"], cat["expert"], start, ip=f"10.0.0.{n}, 192.0.2.50")
        assert r.status_code == 201, r.text
    r = store.hold(cat["service"], cat["expert"], FOURTH, ip="10.0.0.99, 192.0.2.50")
    assert r.status_code == 429 and r.json["error"]["code"] == "too_many_holds"
    # The same client with no spoofed entry is the same visitor.
    assert store.hold(cat["service"], cat["expert"], FOURTH, ip="192.0.2.50").status_code == 429
    # Another address Shopify saw is another visitor.
    assert store.hold(cat["service"], cat["expert"], FOURTH, ip="192.0.2.51").status_code == 201


def test_trusted_hops_come_from_the_configuration(
        client: falcon.testing.TestClient, ctx: Context, store: Storefront,
        cat: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctx, "config", ctx.config.with_(trusted_proxy_hops=2))
    # Two proxies: the visitor is the second entry from the right.
    for n, start in enumerate(STARTS):
        assert store.hold(cat["service"], cat["expert"], start,
                          ip=f"192.0.2.60, 10.1.1.{n}").status_code == 201
    assert store.hold(cat["service"], cat["expert"], FOURTH,
                      ip="6.6.6.6, 192.0.2.60, 10.1.1.9").status_code == 429


def _hold_query(ctx: Context, domain: str, pairs: list[tuple[str, str]]) -> str:
    signed: dict[str, list[str]] = {}
    for key, value in [*pairs, ("path_prefix", "/apps/consult"),
                       ("timestamp", str(int(ctx.clock.now().timestamp())))]:
        signed.setdefault(key, []).append(value)
    flat = [(k, v) for k, vs in signed.items() for v in vs]
    return urlencode([*flat, ("signature", sign_proxy(signed, API_SECRET))])  # type: ignore[arg-type]


@pytest.mark.parametrize("pairs", [
    [("shop", "alpha.myshopify.com"), ("logged_in_customer_id", "9"),
     ("logged_in_customer_id", "10")],
    [("shop", "alpha.myshopify.com"), ("shop", "alpha.myshopify.com")],
    [("shop", "alpha.myshopify.com"), ("logged_in_customer_id", "9"),
     ("logged_in_customer_id", "9")],
])
def test_a_signed_request_that_repeats_an_identity_parameter_is_401(
        client: falcon.testing.TestClient, ctx: Context, store: Storefront,
        cat: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    query = _hold_query(ctx, store.domain, pairs)
    r = client.simulate_post("/proxy/holds", query_string=query, json={
        "service": cat["service"], "expert": cat["expert"], "start": STARTS[0]})
    assert r.status_code == 401 and r.json["error"]["code"] == "invalid_signature"
    assert set(r.json["error"]) == {"code", "message"}
    # Nothing was held: the slot is still offered.
    again = store.hold(cat["service"], cat["expert"], STARTS[0], customer="9")
    assert again.status_code == 201, again.text


def test_repeating_the_customer_id_does_not_bypass_the_hold_limit(
        client: falcon.testing.TestClient, ctx: Context, store: Storefront,
        cat: dict[str, Any]) -> None:
    for start in STARTS:
        assert store.hold(cat["service"], cat["expert"], start, customer="9").status_code == 201
    for variant in ("10", "9"):
        query = _hold_query(ctx, store.domain, [
            ("shop", store.domain), ("logged_in_customer_id", "9"),
            ("logged_in_customer_id", variant)])
        r = client.simulate_post("/proxy/holds", query_string=query, json={
            "service": cat["service"], "expert": cat["expert"], "start": FIFTH})
        assert r.status_code == 401
    assert store.hold(cat["service"], cat["expert"], FIFTH, customer="9").status_code == 429
