"""`GET /proxy/availability`: signed storefront requests, shop dates, zones, bad input."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from engine.bootstrap import Context
from engine.services.shops import ShopRef
from tests.conftest import API_SECRET, Admin, proxy_query

Client = falcon.testing.TestClient


@pytest.fixture
def setup(admin: Admin) -> dict[str, str]:
    svc = admin("POST", "/services", {"title": "Call", "duration_minutes": 60}).json["id"]
    berlin = admin("POST", "/experts", {"name": "Anna", "services": [svc]}).json["id"]
    york = admin("POST", "/experts", {"name": "Maya", "timezone": "America/New_York",
                                      "services": [svc]}).json["id"]
    admin("PUT", f"/experts/{berlin}/schedule", {"weekly": {"tue": [["09:00", "11:00"]]}})
    admin("PUT", f"/experts/{york}/schedule", {"weekly": {"tue": [["04:00", "06:00"]]}})
    return {"service": svc, "berlin": berlin, "york": york}


def get(client: Client, ctx: Context, shop: ShopRef, **params: str) -> falcon.testing.Result:
    return client.simulate_get("/proxy/availability",
                               query_string=proxy_query(ctx, shop.domain, params))


def test_slots_are_merged_sorted_and_localised(client: Client, ctx: Context, shop: ShopRef,
                                               setup: dict[str, str]) -> None:
    r = get(client, ctx, shop, service=setup["service"], start="2026-12-01", days="1")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json
    assert body["shop_timezone"] == "Europe/Berlin"
    # Anna 09:00-11:00 Berlin = 08:00Z-10:00Z; Maya 04:00-06:00 New York = 09:00Z-11:00Z.
    assert [(s["start"], s["expert"]) for s in body["slots"]] == [
        ("2026-12-01T08:00:00Z", setup["berlin"]),
        ("2026-12-01T09:00:00Z", setup["berlin"]),
        ("2026-12-01T09:00:00Z", setup["york"]),
        ("2026-12-01T10:00:00Z", setup["york"]),
    ] if setup["berlin"] < setup["york"] else [
        ("2026-12-01T08:00:00Z", setup["berlin"]),
        ("2026-12-01T09:00:00Z", setup["york"]),
        ("2026-12-01T09:00:00Z", setup["berlin"]),
        ("2026-12-01T10:00:00Z", setup["york"]),
    ]
    first = body["slots"][0]
    assert first["end"] == "2026-12-01T09:00:00Z"
    assert first["local"] == "2026-12-01T09:00:00+01:00"


def test_local_in_requested_zone_and_expert_filter(client: Client, ctx: Context, shop: ShopRef,
                                                   setup: dict[str, str]) -> None:
    r = get(client, ctx, shop, service=setup["service"], start="2026-12-01", days="1",
            expert=setup["york"], tz="Asia/Kolkata")
    assert [s["local"] for s in r.json["slots"]] == ["2026-12-01T14:30:00+05:30",
                                                     "2026-12-01T15:30:00+05:30"]
    assert {s["expert"] for s in r.json["slots"]} == {setup["york"]}


def test_any_expert_lists_each_start_once_with_how_many_could_take_it(
        client: Client, ctx: Context, shop: ShopRef, setup: dict[str, str]) -> None:
    r = get(client, ctx, shop, service=setup["service"], start="2026-12-01", days="1",
            expert="any", tz="America/New_York")
    assert r.status_code == 200, r.text
    assert r.json["slots"] == [
        {"start": "2026-12-01T08:00:00Z", "end": "2026-12-01T09:00:00Z", "expert": "any",
         "local": "2026-12-01T03:00:00-05:00", "experts_free": 1},
        {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z", "expert": "any",
         "local": "2026-12-01T04:00:00-05:00", "experts_free": 2},
        {"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z", "expert": "any",
         "local": "2026-12-01T05:00:00-05:00", "experts_free": 1},
    ]


def test_start_is_a_date_in_the_shop_zone(client: Client, ctx: Context, shop: ShopRef,
                                          admin: Admin, setup: dict[str, str]) -> None:
    # Maya works 23:00-24:00 New York on Mondays = 05:00-06:00 Berlin on Tuesday.
    admin("PUT", f"/experts/{setup['york']}/schedule", {"weekly": {"mon": [["23:00", "24:00"]]}})
    r = get(client, ctx, shop, service=setup["service"], start="2026-12-01", days="1",
            expert=setup["york"])
    assert [s["start"] for s in r.json["slots"]] == ["2026-12-01T04:00:00Z"]
    r = get(client, ctx, shop, service=setup["service"], start="2026-11-30", days="1",
            expert=setup["york"])
    assert r.json["slots"] == []


def test_dst_week_in_the_shop_zone(client: Client, ctx: Context, shop: ShopRef, admin: Admin,
                                   clock: Any) -> None:
    from datetime import UTC, datetime

    clock.set(datetime(2026, 3, 20, tzinfo=UTC))
    svc = admin("POST", "/services", {"title": "Call", "duration_minutes": 60,
                                      "max_days_ahead": 30}).json["id"]
    e = admin("POST", "/experts", {"name": "A", "services": [svc]}).json["id"]
    admin("PUT", f"/experts/{e}/schedule", {"weekly": {"sat": [["09:00", "10:00"]],
                                                       "sun": [["09:00", "10:00"]]}})
    r = get(client, ctx, shop, service=svc, start="2026-03-28", days="2")
    # 09:00 Berlin is 08:00Z before the change and 07:00Z after it.
    assert [s["start"] for s in r.json["slots"]] == ["2026-03-28T08:00:00Z",
                                                     "2026-03-29T07:00:00Z"]
    assert [s["local"] for s in r.json["slots"]] == ["2026-03-28T09:00:00+01:00",
                                                     "2026-03-29T09:00:00+02:00"]


@pytest.mark.parametrize(("params", "field"), [
    ({"start": "2026-12-01", "days": "1"}, "service"),
    ({"service": "S", "days": "1"}, "start"),
    ({"service": "S", "start": "2026-12-01"}, "days"),
    ({"service": "S", "start": "2026-13-01", "days": "1"}, "start"),
    ({"service": "S", "start": "tomorrow", "days": "1"}, "start"),
    ({"service": "S", "start": "2026-12-01", "days": "0"}, "days"),
    ({"service": "S", "start": "2026-12-01", "days": "63"}, "days"),
    ({"service": "S", "start": "2026-12-01", "days": "-1"}, "days"),
    ({"service": "S", "start": "2026-12-01", "days": "1.5"}, "days"),
    ({"service": "S", "start": "2026-12-01", "days": "1", "tz": "Not/AZone"}, "tz"),
])
def test_bad_queries_are_400(client: Client, ctx: Context, shop: ShopRef,
                             setup: dict[str, str], params: dict[str, str], field: str) -> None:
    params = {k: (setup["service"] if v == "S" else v) for k, v in params.items()}
    r = get(client, ctx, shop, **params)
    assert r.status_code == 400
    assert r.json["error"]["code"] == "invalid_request"
    assert field in r.json["error"]["message"]


def test_62_days_is_allowed(client: Client, ctx: Context, shop: ShopRef,
                            setup: dict[str, str]) -> None:
    r = get(client, ctx, shop, service=setup["service"], start="2026-12-01", days="62")
    assert r.status_code == 200
    assert len(r.json["slots"]) == 9 * 2 * 2  # 9 Tuesdays x 2 experts x 2 slots


def test_unknown_ids_are_404(client: Client, ctx: Context, shop: ShopRef,
                             setup: dict[str, str], other_admin: Admin) -> None:
    r = get(client, ctx, shop, service="svc_nope", start="2026-12-01", days="1")
    assert r.status_code == 404
    r = get(client, ctx, shop, service=setup["service"], start="2026-12-01", days="1",
            expert="exp_nope")
    assert r.status_code == 404
    # Another shop's service does not exist for this shop, and vice versa.
    theirs = other_admin("POST", "/services", {"title": "X"}).json["id"]
    assert get(client, ctx, shop, service=theirs, start="2026-12-01", days="1").status_code == 404


def _signed(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    from engine.shopify import sign_proxy

    return urlencode({**params, "signature": sign_proxy(params, API_SECRET)})


def test_signature_failures_are_401(client: Client, ctx: Context, shop: ShopRef,
                                    setup: dict[str, str]) -> None:
    now = int(ctx.clock.now().timestamp())
    base = {"service": setup["service"], "start": "2026-12-01", "days": "1",
            "shop": shop.domain, "path_prefix": "/apps/consult", "timestamp": str(now)}
    good = _signed(base)
    assert client.simulate_get("/proxy/availability", query_string=good).status_code == 200
    cases = [
        "",  # nothing
        good.replace("days=1", "days=2"),  # tampered after signing
        good.replace(shop.domain, "beta.myshopify.com"),  # another shop
        _signed({**base, "timestamp": str(now - 301)}),  # too old
        _signed({**base, "timestamp": str(now + 301)}),  # from the future
        _signed({k: v for k, v in base.items() if k != "timestamp"}),
        good + "&signature=00",  # two signatures
        good.replace("signature=", "signature=zz"),
    ]
    for query in cases:
        r = client.simulate_get("/proxy/availability", query_string=query)
        assert r.status_code == 401, query
        assert r.json["error"]["code"] == "invalid_signature"
    # Signed with another app's secret.
    from urllib.parse import urlencode

    from engine.shopify import sign_proxy
    forged = urlencode({**base, "signature": sign_proxy(base, "shpss_" + "f" * 32)})
    assert client.simulate_get("/proxy/availability", query_string=forged).status_code == 401


def test_shop_not_installed_is_404_unknown_shop(client: Client, ctx: Context,
                                                setup: dict[str, str]) -> None:
    r = client.simulate_get("/proxy/availability", query_string=proxy_query(
        ctx, "nobody.myshopify.com", {"service": setup["service"], "start": "2026-12-01",
                                      "days": "1"}))
    assert r.status_code == 404
    assert r.json["error"]["code"] == "unknown_shop"


def test_notice_and_horizon(client: Client, ctx: Context, shop: ShopRef, admin: Admin) -> None:
    # now = Monday 2026-11-30 12:00Z (13:00 Berlin)
    svc = admin("POST", "/services", {"title": "Call", "duration_minutes": 60,
                                      "min_notice_minutes": 120, "max_days_ahead": 2}).json["id"]
    e = admin("POST", "/experts", {"name": "A", "services": [svc]}).json["id"]
    every_day = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    admin("PUT", f"/experts/{e}/schedule", {"weekly": every_day})
    r = get(client, ctx, shop, service=svc, start="2026-11-30", days="5")
    starts = [s["start"] for s in r.json["slots"]]
    assert starts[0] == "2026-11-30T14:00:00Z"  # 15:00 Berlin: the first after two hours' notice
    assert starts[-1] == "2026-12-02T11:00:00Z"  # the last before now + 48 h
