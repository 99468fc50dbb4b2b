"""Issue 9, "no request gets a 5xx": each reproduced defect, through HTTP, on SQLite and
PostgreSQL. The class is driven with generated input in tests/fuzz/; these pin the
instances that were found, and the contract's answers for them."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import falcon.testing
import pytest
from sqlalchemy import select

from engine.bootstrap import Context
from engine.crypto import Keyring, generate_key
from engine.shopify import webhook_hmac
from engine.store import new_id
from engine.store.models import Claim, Refund
from plugins.calendar_local.models import IcsFeed
from tests.conftest import (
    API_SECRET,
    Admin,
    Storefront,
    make_catalog,
    order_payload,
    proxy_query,
)

TUE_9 = "2026-12-01T08:00:00Z"
TUE_10 = "2026-12-01T09:00:00Z"


@pytest.fixture
def cat(admin: Admin) -> dict[str, Any]:
    return make_catalog(admin)


def _error(r: falcon.testing.Result, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert set(r.json) == {"error"} and set(r.json["error"]) == {"code", "message"}, r.text
    if code is not None:
        assert r.json["error"]["code"] == code, r.text


def _raw_webhook(client: falcon.testing.TestClient, domain: str, topic: str, body: bytes,
                 **headers: str) -> falcon.testing.Result:
    base = {"X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": domain,
            "X-Shopify-Hmac-Sha256": webhook_hmac(body, API_SECRET),
            "X-Shopify-Webhook-Id": new_id("wh"), "Content-Type": "application/json"}
    base.update(headers)
    return client.simulate_post("/webhooks", body=body, headers=base)


# --------------------------------------------------------------------------- NUL bytes


@pytest.mark.parametrize("param", ["service", "start", "days", "expert", "tz"])
def test_nul_in_any_availability_parameter_is_400_naming_it(store: Storefront,
                                                             cat: dict[str, Any],
                                                             param: str) -> None:
    params = {"service": cat["service"], "start": "2026-12-01", "days": "1",
              "expert": cat["expert"], "tz": "Europe/Berlin"}
    params[param] = params[param] + "\x00"
    r = store.get("/availability", params)
    _error(r, 400, "invalid_request")
    assert param in r.json["error"]["message"]
    # and the server keeps serving
    params[param] = params[param][:-1]
    assert store.get("/availability", params).status_code == 200


def test_nul_in_path_ids_is_400(store: Storefront, admin: Admin, client: Any,
                                cat: dict[str, Any]) -> None:
    r = store.release("hold_x%00y")
    _error(r, 400, "invalid_request")
    for path in ("/services/svc%00", "/experts/x%00/schedule", "/bookings/b%00/cancel"):
        method = "POST" if path.endswith("cancel") else "GET"
        _error(admin(method, path), 400, "invalid_request")
    assert admin("GET", "/services").status_code == 200


@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "x\udfffy", "bell\x07"])
def test_bad_text_in_any_json_string_or_key_is_400(admin: Admin, store: Storefront,
                                                   cat: dict[str, Any], text: str) -> None:
    def post(path: str, doc: Any, query: str = "", auth: bool = True) -> Any:
        # json.dumps escapes (\u0000, \ud800): what a client that sends them would send
        return admin.client.simulate_post(path, body=json.dumps(doc).encode(),
                                          query_string=query,
                                          headers=_headers(admin) if auth else {})

    _error(post("/admin/api/services", {"title": text, "duration_minutes": 30}), 400,
           "invalid_request")
    _error(post("/admin/api/experts", {"name": "n", "email": "a@example.com",
                                       "services": [cat["service"]], text: 1}),
           400, "invalid_request")
    hold = {"service": cat["service"], "expert": cat["expert"], "start": TUE_9,
            "answers": {"q": text}}
    _error(post("/proxy/holds", hold, proxy_query(store.ctx, store.domain, {}), False),
           400, "invalid_request")
    # nothing half-written, and the next good request is served
    assert len(admin("GET", "/services").json["services"]) == 1


def test_json_body_refusals(admin: Admin) -> None:
    deep = ("[" * 100_000) + ("]" * 100_000)
    r = admin.client.simulate_post("/admin/api/services", body=deep,
                                   headers={**_headers(admin), "Content-Type":
                                            "application/json"})
    _error(r, 400)
    for literal in ("NaN", "Infinity", "-Infinity", "1e400", "9" * 5000, "\"\\ud800\"",
                    b"\xff\xfe".decode("latin-1")):
        body = '{"title": "T", "duration_minutes": ' + literal + "}"
        r = admin.client.simulate_post("/admin/api/services", body=body,
                                       headers={**_headers(admin),
                                                "Content-Type": "application/json"})
        _error(r, 400)
    for value in (10 ** 30, 1e308, -(10 ** 30), [], {}, "30", True):
        _error(admin("POST", "/services", {"title": "T", "duration_minutes": value}), 400)


def _headers(admin: Admin) -> dict[str, str]:
    from tests.conftest import admin_headers

    return admin_headers(admin.ctx, admin.domain)


# --------------------------------------------------------------------------- body limits


def test_body_over_1_mib_is_413_with_or_without_content_length(admin: Admin) -> None:
    big = b'{"title": "' + b"x" * (1 << 20) + b'"}'
    r = admin.client.simulate_post("/admin/api/services", body=big, headers=_headers(admin))
    _error(r, 413, "payload_too_large")

    class Chunked:
        """A de-chunked body as gunicorn hands it over: no Content-Length, a stream that
        ends (wsgi.input_terminated). Counts how much is read."""

        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def read(self, size: int = -1) -> bytes:
            end = len(self.data) if size < 0 else self.pos + size
            chunk = self.data[self.pos:end]
            self.pos += len(chunk)
            return chunk

    stream = Chunked(big + b"y" * (4 << 20))
    env = falcon.testing.create_environ(
        path="/admin/api/services", method="POST",
        headers={**_headers(admin), "Transfer-Encoding": "chunked"})
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input"] = stream
    env["wsgi.input_terminated"] = True
    result = falcon.testing.StartResponseMock()
    body = b"".join(admin.client.app(env, result))
    assert result.status.startswith("413"), body
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert stream.pos <= (1 << 20) + 1  # read no further than the limit


def test_webhook_body_limit_is_10_mib(client: Any, shop: Any) -> None:
    under = json.dumps({"id": 1, "note": "x" * (6 << 20)}).encode()
    r = _raw_webhook(client, shop.domain, "orders/create", under)
    assert r.status_code == 200, r.text
    over = json.dumps({"id": 1, "note": "x" * (10 << 20)}).encode()
    _error(_raw_webhook(client, shop.domain, "orders/create", over), 413, "payload_too_large")


# --------------------------------------------------------------------------- numbers, ids


@pytest.mark.parametrize("days", ["²", "٣", "1.0", "+1", "-1", "0", "63", "1e1", "0x1",
                                  "9" * 400, " ", "1 2"])
def test_days_must_be_ascii_digits_1_to_62(store: Storefront, cat: dict[str, Any],
                                           days: str) -> None:
    r = store.get("/availability", {"service": cat["service"], "start": "2026-12-01",
                                    "days": days})
    _error(r, 400, "invalid_request")
    assert "days" in r.json["error"]["message"]


def test_shopify_ids_are_strings_of_at_most_20_digits(admin: Admin) -> None:
    twenty = "9" * 20
    r = admin("POST", "/services", {"title": "T", "duration_minutes": 30,
                                    "product_id": twenty, "variant_id": 12345678901234567890})
    assert r.status_code == 201, r.text
    assert r.json["product_id"] == twenty
    assert r.json["variant_id"] == "12345678901234567890"
    listed = admin("GET", "/services")
    assert listed.status_code == 200, listed.text
    assert listed.json["services"][0]["product_id"] == twenty
    for bad in ("9" * 21, 10 ** 20, "0", "01", "١٢٣", "12 ", -5, 1.5, True, "gid://shopify/X/"):
        _error(admin("POST", "/services", {"title": "T", "duration_minutes": 30,
                                           "variant_id": bad}), 400, "invalid_request")


def test_ids_longer_than_any_id_name_nothing(admin: Admin, store: Storefront,
                                             cat: dict[str, Any]) -> None:
    long_id = "svc_" + "x" * 5000
    _error(admin("GET", f"/services/{long_id}"), 404, "not_found")
    _error(store.release("hold_" + "y" * 5000), 404, "not_found")
    r = store.get("/availability", {"service": "s" * 500, "start": "2026-12-01", "days": "1"})
    _error(r, 400, "invalid_request")


# --------------------------------------------------------------------------- webhooks


def _booked(ctx: Context, order_id: str) -> list[Claim]:
    with ctx.db.read() as s:
        return list(s.scalars(select(Claim).where(Claim.order_id == order_id)))


def _refunds(ctx: Context, order_id: str) -> list[str]:
    with ctx.db.read() as s:
        return list(s.scalars(select(Refund.reason).where(Refund.order_id == order_id)))


def test_webhook_with_nul_and_surrogates_still_decides_its_good_lines(
        store: Storefront, cat: dict[str, Any], ctx: Context, client: Any) -> None:
    good = store.hold(cat["service"], cat["expert"], TUE_9, ip="192.0.2.10").json["hold"]
    payload = order_payload(501, [good, "hold_bad\x00", "\ud800"])
    payload["note"] = "a\x00b\udfff"
    payload["customer"]["first_name"] = "Jo\x00n"
    body = json.dumps(payload).encode()  # ensure_ascii: \u0000 and \ud800 escapes
    for _ in range(2):  # a retry changes nothing and answers the same
        r = _raw_webhook(client, store.domain, "orders/paid", body,
                         **{"X-Shopify-Webhook-Id": "wh-\x00-\x7f-501"})
        assert r.status_code == 200, r.text
    booked = _booked(ctx, "501")
    assert [c.id for c in booked] == [good]
    assert sorted(_refunds(ctx, "501")) == ["hold_unknown", "hold_unknown"]


@pytest.mark.parametrize("webhook_id", ["\ud800", "a\udfffb", "\udbff\x00"])
def test_a_lone_surrogate_in_the_webhook_id_still_books_once(
        store: Storefront, cat: dict[str, Any], ctx: Context, client: Any,
        webhook_id: str) -> None:
    h = store.hold(cat["service"], cat["expert"], TUE_9, ip="192.0.2.15").json["hold"]
    body = json.dumps(order_payload(504, [h])).encode()
    answers = [_raw_webhook(client, store.domain, "orders/paid", body,
                            **{"X-Shopify-Webhook-Id": webhook_id}) for _ in range(2)]
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert [r.json["status"] for r in answers] == ["processed", "duplicate"]
    assert [(c.id, c.status) for c in _booked(ctx, "504")] == [(h, "confirmed")]


def test_webhook_weird_payloads_never_5xx(store: Storefront, cat: dict[str, Any],
                                          ctx: Context, client: Any) -> None:
    first = store.hold(cat["service"], cat["expert"], TUE_10, ip="192.0.2.11").json["hold"]
    good = store.hold(cat["service"], cat["expert"], TUE_9, ip="192.0.2.14").json["hold"]
    payload = order_payload(502, [first])
    payload["financial_status"] = {}
    payload["deep"] = json.loads("[" * 50 + "]" * 50)
    r = _raw_webhook(client, store.domain, "orders/create", json.dumps(payload).encode())
    assert r.status_code == 200, r.text
    # deep nesting beyond what json.loads can recurse through, huge and non-finite
    # numbers: the delivery is answered, and its good line is decided
    deep = "[" * 200_000 + "]" * 200_000
    text = json.dumps(order_payload(503, [good])).replace(
        '"currency"', f'"deep": {deep}, "huge": {"9" * 6000}, "inf": 1e999, '
                      f'"nan": NaN, "currency"')
    r = _raw_webhook(client, store.domain, "orders/paid", text.encode())
    assert r.status_code == 200, r.text
    assert [c.id for c in _booked(ctx, "502")] == [first]  # unpaid: pending
    assert [(c.id, c.status) for c in _booked(ctx, "503")] == [(good, "confirmed")]
    for body in (b"", b"not json", b"\xff\xfe\x00", b"[1, 2", b"null", b"7", b'"s"',
                 b"[]", b'{"line_items": {"a": 1}}', b'{"id": {}}'):
        for topic in ("orders/create", "orders/paid", "orders/cancelled", "app/unknown",
                      "customers/redact", "customers/data_request"):
            r = _raw_webhook(client, store.domain, topic, body)
            assert r.status_code < 500, (topic, body, r.text)
            if r.status_code >= 400:
                _error(r, r.status_code)


@pytest.mark.parametrize("domain", [None, "", "   ", "\t"])
def test_missing_or_blank_shop_domain_is_400(store: Storefront, cat: dict[str, Any],
                                             ctx: Context, client: Any,
                                             domain: str | None) -> None:
    h = store.hold(cat["service"], cat["expert"], TUE_9, ip="192.0.2.12").json["hold"]
    body = json.dumps(order_payload(600, [h])).encode()
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Webhook-Id": new_id("wh"),
               "X-Shopify-Hmac-Sha256": webhook_hmac(body, API_SECRET)}
    if domain is not None:
        headers["X-Shopify-Shop-Domain"] = domain
    r = client.simulate_post("/webhooks", body=body, headers=headers)
    _error(r, 400, "invalid_request")
    assert _booked(ctx, "600") == []


def test_a_hold_of_another_shop_counts_as_unknown(store: Storefront, cat: dict[str, Any],
                                                  ctx: Context, client: Any,
                                                  other_shop: Any) -> None:
    h = store.hold(cat["service"], cat["expert"], TUE_9, ip="192.0.2.13").json["hold"]
    # the other shop's order carries this shop's hold
    r = _raw_webhook(client, other_shop.domain, "orders/paid",
                     json.dumps(order_payload(700, [h])).encode())
    assert r.status_code == 200, r.text
    assert _booked(ctx, "700") == []
    with ctx.db.read() as s:
        claim = s.get(Claim, h)
        assert claim is not None and claim.status == "held" and claim.order_id is None
        reasons = list(s.scalars(select(Refund.reason).where(Refund.order_id == "700",
                                                             Refund.shop_id == other_shop.id)))
    assert reasons == ["hold_unknown"]


# --------------------------------------------------------------------------- secrets


def test_a_secret_no_key_decrypts_is_reconnect_required_not_500(
        admin: Admin, ctx: Context, cat: dict[str, Any]) -> None:
    old = Keyring.parse(generate_key())  # a key since dropped from the configuration
    feed_id = new_id("ics")
    with ctx.db.write() as s:
        s.add(IcsFeed(id=feed_id, shop_id=ctx_shop_id(ctx, admin.domain),
                      expert_id=cat["expert"], name="Old feed",
                      url=old.encrypt("https://calendar.example/secret.ics",
                                      aad=f"ics_feed:{feed_id}:url"),
                      events=0, created_at=ctx.clock.now()))
    r = admin("POST", f"/calendar/feeds/{feed_id}/refresh")
    _error(r, 409, "reconnect_required")
    assert "connect" in r.json["error"]["message"]
    assert admin("GET", "/services").status_code == 200


def test_provider_credentials_no_key_decrypts_are_a_broken_connection(
        admin: Admin, ctx: Context) -> None:
    from engine.providers.errors import ConnectionBroken
    from engine.services.connections import credentials_aad, open_connection
    from engine.services.shops import ShopRef
    from engine.store.models import Shop
    from engine.store.providers_models import ProviderConnection

    old = Keyring.parse(generate_key())  # a key since dropped from the configuration
    conn_id = new_id("conn")
    with ctx.db.write() as s:
        shop = s.scalars(select(Shop).where(Shop.domain == admin.domain)).one()
        ref = ShopRef(shop.id, shop.domain, shop.timezone)
        s.add(ProviderConnection(
            id=conn_id, shop_id=shop.id, provider="google", account="a@example.com",
            status="connected", connected_at=ctx.clock.now(), updated_at=ctx.clock.now(),
            credentials=old.encrypt('{"refresh_token": "x"}', aad=credentials_aad(conn_id))))
    with pytest.raises(ConnectionBroken, match="reconnect"):
        open_connection(ctx.plugins, ref, "google")
    # The connections page still answers, listing the connection.
    r = admin("GET", "/connections")
    assert r.status_code == 200, r.text


def ctx_shop_id(ctx: Context, domain: str) -> str:
    from engine.store.models import Shop

    with ctx.db.read() as s:
        return str(s.scalar(select(Shop.id).where(Shop.domain == domain)))


def test_path_and_query_controls_are_refused_on_every_surface(
        client: Any, store: Storefront, admin: Admin, cat: dict[str, Any]) -> None:
    for path in ("/healthz", "/readyz", "/admin", "/proxy/book", "/auth/install",
                 "/webhooks"):
        r = client.simulate_get(path, query_string="x=" + quote("\x00"))
        _error(r, 400, "invalid_request")
    _error(client.simulate_get("/healthz\x01"), 400, "invalid_request")
    r = client.simulate_get("/healthz", query_string="a=" + "b" * (20 << 10))
    _error(r, 414, "uri_too_long")
    assert client.simulate_get("/healthz").status_code == 200
