"""The embedded admin API: CRUD, strict validation, session tokens and tenant isolation."""

from __future__ import annotations

import falcon.testing
import jwt
import pytest

from engine.bootstrap import Context
from engine.services.shops import ShopRef
from tests.conftest import API_KEY, API_SECRET, Admin, admin_headers

SERVICE = {"title": "Intro call", "duration_minutes": 45, "buffer_after_minutes": 15,
           "product_id": 632910392, "variant_id": "gid://shopify/ProductVariant/808950810"}


def test_service_crud_round_trip(admin: Admin) -> None:
    created = admin("POST", "/services", SERVICE)
    assert created.status_code == 201
    body = created.json
    assert body["title"] == "Intro call"
    assert body["interval_minutes"] == 45  # defaults to the duration
    assert body["buffer_before_minutes"] == 0
    assert body["product_id"] == "632910392"
    assert body["variant_id"] == "gid://shopify/ProductVariant/808950810"
    assert created.headers["location"] == f"/admin/api/services/{body['id']}"

    assert admin("GET", f"/services/{body['id']}").json == body
    assert admin("GET", "/services").json == {"services": [body]}

    patched = admin("PATCH", f"/services/{body['id']}", {"interval_minutes": 15})
    assert patched.status_code == 200
    assert patched.json == {**body, "interval_minutes": 15}

    replaced = admin("PUT", f"/services/{body['id']}", {"title": "Short", "duration_minutes": 20})
    assert replaced.json["buffer_after_minutes"] == 0  # PUT: left out -> default
    assert replaced.json["product_id"] is None

    assert admin("DELETE", f"/services/{body['id']}").status_code == 204
    assert admin("GET", f"/services/{body['id']}").status_code == 404
    assert admin("GET", "/services").json == {"services": []}
    assert admin("DELETE", f"/services/{body['id']}").status_code == 404


@pytest.mark.parametrize(("doc", "field"), [
    ({}, "title"),
    ({"title": ""}, "title"),
    ({"title": "x" * 256}, "title"),
    ({"title": "a\x00b"}, "title"),
    ({"title": 5}, "title"),
    ({"title": "A", "duration_minutes": 0}, "duration_minutes"),
    ({"title": "A", "duration_minutes": "30"}, "duration_minutes"),
    ({"title": "A", "duration_minutes": True}, "duration_minutes"),
    ({"title": "A", "duration_minutes": 30.5}, "duration_minutes"),
    ({"title": "A", "duration_minutes": 100000}, "duration_minutes"),
    ({"title": "A", "buffer_before_minutes": -1}, "buffer_before_minutes"),
    ({"title": "A", "max_days_ahead": 0}, "max_days_ahead"),
    ({"title": "A", "product_id": "abc"}, "product_id"),
    ({"title": "A", "product_id": -3}, "product_id"),
    ({"title": "A", "colour": "red"}, "colour"),
    ({"title": "A", "title_": None}, "title_"),
])
def test_service_validation_names_the_field(admin: Admin, doc: dict[str, object],
                                            field: str) -> None:
    r = admin("POST", "/services", doc)
    assert r.status_code == 400
    assert r.json["error"]["code"] == "invalid_request"
    assert field in r.json["error"]["message"]
    assert admin("GET", "/services").json == {"services": []}  # nothing half-written


@pytest.mark.parametrize("body", [b"", b"{", b"[1,2]", b"\xff\xfe", b"null", b'"str"'])
def test_malformed_bodies_are_400(client: falcon.testing.TestClient, ctx: Context,
                                  shop: ShopRef, body: bytes) -> None:
    r = client.simulate_post("/admin/api/services", body=body,
                             headers={**admin_headers(ctx, shop.domain),
                                      "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json["error"]["code"] in {"invalid_json", "invalid_request"}


def test_expert_crud_and_timezone_default(admin: Admin) -> None:
    svc = admin("POST", "/services", SERVICE).json["id"]
    r = admin("POST", "/experts", {"name": "Anna", "email": "anna@example.com",
                                   "services": [svc]})
    assert r.status_code == 201
    expert = r.json
    assert expert["timezone"] == "Europe/Berlin"  # the shop's
    assert expert["services"] == [svc]

    # An expert without a zone of her own follows the shop's when it changes.
    admin("PATCH", "/settings", {"timezone": "Asia/Tokyo"})
    assert admin("GET", f"/experts/{expert['id']}").json["timezone"] == "Asia/Tokyo"

    r = admin("PATCH", f"/experts/{expert['id']}", {"timezone": "America/Chicago"})
    assert r.json["timezone"] == "America/Chicago"
    r = admin("PATCH", f"/experts/{expert['id']}", {"services": []})
    assert r.json["services"] == []
    assert admin("DELETE", f"/experts/{expert['id']}").status_code == 204
    assert admin("GET", "/experts").json == {"experts": []}


@pytest.mark.parametrize(("doc", "field"), [
    ({"name": "A", "email": "not-an-email"}, "email"),
    ({"name": "A", "email": "a@b.c\r\nBcc: x@y.z"}, "email"),
    ({"name": "A", "timezone": "Mars/Olympus"}, "timezone"),
    ({"name": "A", "timezone": "europe/berlin"}, "timezone"),
    ({"name": "A", "services": "svc_1"}, "services"),
    ({"name": "A", "services": ["svc_doesnotexist"]}, "services"),
    ({"email": "a@example.com"}, "name"),
])
def test_expert_validation(admin: Admin, doc: dict[str, object], field: str) -> None:
    r = admin("POST", "/experts", doc)
    assert r.status_code == 400
    assert field in r.json["error"]["message"]
    assert admin("GET", "/experts").json == {"experts": []}


def test_schedule_round_trip_and_replace(admin: Admin) -> None:
    expert = admin("POST", "/experts", {"name": "A"}).json["id"]
    assert admin("GET", f"/experts/{expert}/schedule").json == {"weekly": {}, "overrides": []}
    doc = {"weekly": {"mon": [["09:00", "12:00"], ["13:00", "17:00"]], "sat": [["20:00", "24:00"]]},
           "overrides": [{"date": "2026-12-24", "windows": []},
                         {"date": "2026-12-27", "windows": [["10:00", "14:00"]]}]}
    r = admin("PUT", f"/experts/{expert}/schedule", doc)
    assert r.status_code == 200
    assert r.json == doc
    assert admin("GET", f"/experts/{expert}/schedule").json == doc
    # PUT replaces the whole document: overrides left out are gone.
    r = admin("PUT", f"/experts/{expert}/schedule", {"weekly": {"tue": [["08:00", "09:00"]]}})
    assert r.json == {"weekly": {"tue": [["08:00", "09:00"]]}, "overrides": []}


@pytest.mark.parametrize("doc", [
    {"weekly": {"monday": [["09:00", "17:00"]]}},
    {"weekly": {"mon": [["9:00", "17:00"]]}},
    {"weekly": {"mon": [["09:00", "24:01"]]}},
    {"weekly": {"mon": [["24:00", "24:00"]]}},
    {"weekly": {"mon": [["17:00", "09:00"]]}},
    {"weekly": {"mon": [["09:00", "09:00"]]}},
    {"weekly": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}},
    {"weekly": {"mon": [["09:00"]]}},
    {"weekly": {"mon": "09:00-17:00"}},
    {"weekly": []},
    {"overrides": [{"date": "2026-02-30", "windows": []}]},
    {"overrides": [{"date": "24/12/2026", "windows": []}]},
    {"overrides": [{"date": "2026-12-24", "windows": []}, {"date": "2026-12-24", "windows": []}]},
    {"overrides": [{"windows": []}]},
    {"overrides": {"2026-12-24": []}},
    {"holidays": []},
])
def test_schedule_validation(admin: Admin, doc: dict[str, object]) -> None:
    expert = admin("POST", "/experts", {"name": "A"}).json["id"]
    admin("PUT", f"/experts/{expert}/schedule", {"weekly": {"fri": [["09:00", "10:00"]]}})
    r = admin("PUT", f"/experts/{expert}/schedule", doc)
    assert r.status_code == 400, r.json
    assert r.json["error"]["code"] == "invalid_request"
    # The old schedule is untouched.
    assert admin("GET", f"/experts/{expert}/schedule").json["weekly"] == {
        "fri": [["09:00", "10:00"]]}


def test_settings_put_defaults_and_patch(admin: Admin) -> None:
    r = admin("PATCH", "/settings", {"reminders": [60, 1440, 60], "calendar_provider": "google"})
    assert r.json["reminders"] == [1440, 60]
    assert r.json["calendar_provider"] == "google"
    r = admin("PUT", "/settings", {"timezone": "America/New_York"})
    assert r.json == {"timezone": "America/New_York", "calendar_provider": "local",
                      "video_provider": "none", "mail_provider": "outbox",
                      "reminders": [1440, 60], "auto_refund": False,
                      "pending_hold_hours": 48, "customer_cancel": True,
                      "customer_reschedule": True, "cancel_notice_minutes": 1440,
                      "reschedule_notice_minutes": 1440, "max_reschedules": 2,
                      "notify_experts": True}
    assert admin("PATCH", "/settings", {"auto_refund": True}).json["auto_refund"] is True
    for bad in ({"timezone": "Nowhere"}, {"reminders": [0]}, {"reminders": "1h"},
                {"auto_refund": "yes"},
                {"calendar_provider": "carrier-pigeon"}, {"nope": 1}):
        r = admin("PATCH", "/settings", bad)
        assert r.status_code == 400, bad


def test_tenant_isolation(admin: Admin, other_admin: Admin) -> None:
    svc = admin("POST", "/services", SERVICE).json["id"]
    expert = admin("POST", "/experts", {"name": "A", "services": [svc]}).json["id"]
    for method, path, body in [
        ("GET", f"/services/{svc}", None),
        ("PATCH", f"/services/{svc}", {"title": "stolen"}),
        ("PUT", f"/services/{svc}", {"title": "stolen"}),
        ("DELETE", f"/services/{svc}", None),
        ("GET", f"/experts/{expert}", None),
        ("PATCH", f"/experts/{expert}", {"name": "stolen"}),
        ("DELETE", f"/experts/{expert}", None),
        ("GET", f"/experts/{expert}/schedule", None),
        ("PUT", f"/experts/{expert}/schedule", {"weekly": {}}),
    ]:
        r = other_admin(method, path, body)
        assert r.status_code == 404, (method, path)
        assert r.json["error"]["code"] == "not_found"
    assert other_admin("GET", "/services").json == {"services": []}
    assert other_admin("GET", "/experts").json == {"experts": []}
    # Another shop cannot attach our service to its expert either.
    r = other_admin("POST", "/experts", {"name": "B", "services": [svc]})
    assert r.status_code == 400
    assert admin("GET", f"/services/{svc}").json["title"] == "Intro call"


def _token(ctx: Context, **claims: object) -> str:
    now = int(ctx.clock.now().timestamp())
    payload = {"iss": "https://alpha.myshopify.com/admin", "dest": "https://alpha.myshopify.com",
               "aud": API_KEY, "sub": "1", "exp": now + 60, "nbf": now - 5, "iat": now - 5,
               "jti": "x", "sid": "y"}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, API_SECRET,
                      algorithm="HS256")


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Basic abc"},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer not.a.jwt"},
])
def test_admin_without_valid_token_is_401(client: falcon.testing.TestClient, shop: ShopRef,
                                          headers: dict[str, str]) -> None:
    r = client.simulate_get("/admin/api/services", headers=headers)
    assert r.status_code == 401
    assert r.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("claims", [
    {"aud": "another-app"},
    {"exp": 1},
    {"nbf": 4102444800},
    {"dest": "https://evil.example.com"},
    {"iss": "https://beta.myshopify.com/admin"},
    {"dest": None},
])
def test_admin_rejects_bad_claims(client: falcon.testing.TestClient, ctx: Context, shop: ShopRef,
                                  claims: dict[str, object]) -> None:
    r = client.simulate_get("/admin/api/services",
                            headers={"Authorization": f"Bearer {_token(ctx, **claims)}"})
    assert r.status_code == 401


def test_admin_token_leeway_and_wrong_secret(client: falcon.testing.TestClient, ctx: Context,
                                             shop: ShopRef) -> None:
    now = int(ctx.clock.now().timestamp())
    ok = _token(ctx, exp=now - 2)  # within a few seconds' leeway
    assert client.simulate_get("/admin/api/services",
                               headers={"Authorization": f"Bearer {ok}"}).status_code == 200
    forged = jwt.encode({"dest": "https://alpha.myshopify.com", "aud": API_KEY,
                         "exp": now + 60, "nbf": now,
                         "iss": "https://alpha.myshopify.com/admin"},
                        "shpss_ffffffffffffffffffffffffffffffff",
                        algorithm="HS256")
    assert client.simulate_get("/admin/api/services",
                               headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_admin_for_unknown_shop_is_403(client: falcon.testing.TestClient, ctx: Context) -> None:
    r = client.simulate_get("/admin/api/services",
                            headers=admin_headers(ctx, "nobody.myshopify.com"))
    assert r.status_code == 403
    assert r.json["error"]["code"] == "shop_not_installed"


def test_unknown_routes_and_methods_answer_json(admin: Admin,
                                               client: falcon.testing.TestClient) -> None:
    r = client.simulate_get("/no/such/thing")
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    r = admin("DELETE", "/services")
    assert r.status_code == 405 and r.json["error"]["code"] == "method_not_allowed"
