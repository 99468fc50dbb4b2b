"""The admin API's capacity and intake fields (issue 11, CONTRACT "Embedded admin"):
services' ``seats``/``limits``/``assignment``/``questions``, experts' ``limits``/
``priority``/``weight`` and the storefront's ``photo_url``/``bio`` (issue 13). Each
round-trips through POST, GET, PUT (defaults back) and PATCH (only what is given), and
every bad value is a 400 naming the field. Both databases (the ``db_url`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Admin

QUESTIONS = [{"id": "topic", "label": "Topic", "type": "text", "required": True},
             {"id": "level", "label": "Level", "type": "choice",
              "choices": ["Beginner", "Expert"]}]
SERVICE_DEFAULTS = {"seats": 1, "limits": {}, "assignment": "least_booked", "questions": []}
EXPERT_DEFAULTS = {"limits": {}, "priority": 50, "weight": 1, "photo_url": None, "bio": None}


def service(admin: Admin, **fields: Any) -> Any:
    return admin("POST", "/services", {"title": "Workshop", **fields})


def expert(admin: Admin, **fields: Any) -> Any:
    return admin("POST", "/experts", {"name": "Ann", **fields})


def test_service_defaults(admin: Admin) -> None:
    r = service(admin)
    assert r.status_code == 201
    assert {k: r.json[k] for k in SERVICE_DEFAULTS} == SERVICE_DEFAULTS


def test_service_round_trip(admin: Admin) -> None:
    body = {"seats": 8, "limits": {"day": 3, "week": 10, "month": 30},
            "assignment": "priority", "questions": QUESTIONS}
    created = service(admin, **body).json
    sid = created["id"]
    got = admin("GET", f"/services/{sid}").json
    for doc in (created, got, admin("GET", "/services").json["services"][0]):
        assert doc["seats"] == 8 and doc["limits"] == body["limits"]
        assert doc["assignment"] == "priority"
        assert doc["questions"] == [QUESTIONS[0], {**QUESTIONS[1], "required": False}]
    # PATCH changes only what it names.
    patched = admin("PATCH", f"/services/{sid}", {"limits": {"week": 2}}).json
    assert patched["limits"] == {"week": 2} and patched["seats"] == 8
    assert patched["questions"][0]["id"] == "topic"
    patched = admin("PATCH", f"/services/{sid}", {"questions": [], "seats": 1000}).json
    assert patched["questions"] == [] and patched["seats"] == 1000
    # PUT replaces: left out, each takes its default.
    put = admin("PUT", f"/services/{sid}", {"title": "Call"}).json
    assert {k: put[k] for k in SERVICE_DEFAULTS} == SERVICE_DEFAULTS
    assert admin("GET", f"/services/{sid}").json == put


def test_expert_defaults(admin: Admin) -> None:
    r = expert(admin)
    assert r.status_code == 201
    assert {k: r.json[k] for k in EXPERT_DEFAULTS} == EXPERT_DEFAULTS


def test_expert_round_trip(admin: Admin) -> None:
    body = {"limits": {"day": 2}, "priority": 100, "weight": 7,
            "photo_url": "https://cdn.example.com/ann.jpg?w=200#x",
            "bio": "  Tax adviser.\r\nTwenty years of practice.  "}
    created = expert(admin, **body).json
    eid = created["id"]
    for doc in (created, admin("GET", f"/experts/{eid}").json,
                admin("GET", "/experts").json["experts"][0]):
        assert doc["limits"] == {"day": 2} and doc["priority"] == 100 and doc["weight"] == 7
        assert doc["photo_url"] == body["photo_url"]
        assert doc["bio"] == "Tax adviser.\nTwenty years of practice."
    patched = admin("PATCH", f"/experts/{eid}", {"priority": 0, "photo_url": None}).json
    assert patched["priority"] == 0 and patched["photo_url"] is None
    assert patched["weight"] == 7 and patched["bio"].startswith("Tax")
    assert admin("PATCH", f"/experts/{eid}", {"bio": "   "}).json["bio"] is None
    put = admin("PUT", f"/experts/{eid}", {"name": "Ann"}).json
    assert {k: put[k] for k in EXPERT_DEFAULTS} == EXPERT_DEFAULTS


BAD_SERVICE = [
    ("seats", 0), ("seats", 1001), ("seats", 2.5), ("seats", True), ("seats", "3"),
    ("seats", None),
    ("limits", None), ("limits", [3]), ("limits", 3), ("limits.days", {"days": 3}),
    ("limits.day", {"day": 0}), ("limits.week", {"week": -1}), ("limits.month", {"month": "5"}),
    ("limits.day", {"day": True}), ("limits.day", {"day": 1.5}), ("limits.day", {"day": None}),
    ("limits.month", {"month": 10 ** 6}),
    ("assignment", "round_robin"), ("assignment", None), ("assignment", 1),
    ("assignment", "Priority"),
    ("questions", None), ("questions", {}), ("questions[0].type", [{"id": "a", "label": "A",
                                                                      "type": "date"}]),
    ("questions[1].id", [{"id": "a", "label": "A", "type": "text"},
                         {"id": "a", "label": "B", "type": "text"}]),
    ("questions[0].choices", [{"id": "a", "label": "A", "type": "choice"}]),
    ("questions[0].label", [{"id": "a", "label": "Expert", "type": "text"}]),
]


@pytest.mark.parametrize(("field", "value"), BAD_SERVICE,
                         ids=[f"{f}={v!r}"[:60] for f, v in BAD_SERVICE])
def test_bad_service_values_name_the_field(admin: Admin, field: str, value: Any) -> None:
    name = field.split(".")[0].split("[")[0]
    sid = service(admin).json["id"]
    for r in (service(admin, **{name: value}),
              admin("PATCH", f"/services/{sid}", {name: value}),
              admin("PUT", f"/services/{sid}", {"title": "X", name: value})):
        assert r.status_code == 400, r.text
        assert r.json["error"]["code"] == "invalid_request"
        assert field in r.json["error"]["message"] or name in r.json["error"]["message"]
    assert admin("GET", f"/services/{sid}").json["seats"] == 1  # nothing was written


BAD_EXPERT = [
    ("limits", "3"), ("limits.year", {"year": 1}), ("limits.week", {"week": 0}),
    ("priority", -1), ("priority", 101), ("priority", "50"), ("priority", None),
    ("weight", 0), ("weight", 101), ("weight", False),
    ("photo_url", "http://cdn.example.com/a.jpg"), ("photo_url", "https://"),
    ("photo_url", "https://user:pw@cdn.example.com/a.jpg"),
    ("photo_url", "https://cdn.example.com/a b.jpg"),
    ("photo_url", "https://cdn.example.com/a.jpg\n"), ("photo_url", "javascript:alert(1)"),
    ("photo_url", "https://cdn.example.com/\"onerror=alert(1)"),
    ("photo_url", "https://cdn.example.com/<x>"), ("photo_url", "https://localhost/a.jpg"),
    ("photo_url", "https://exämple.com/a.jpg"), ("photo_url", "https://a.com:0/"),
    ("photo_url", "https://a.com:99999/"), ("photo_url", "https://a.com\\@b.com/"),
    ("photo_url", "https://a.com/" + "x" * 2000), ("photo_url", 5),
    ("bio", "x" * 501), ("bio", "a\x00b"), ("bio", "a\x1b[31m"), ("bio", "a\u2028b"),
    ("bio", 5),
]


@pytest.mark.parametrize(("field", "value"), BAD_EXPERT,
                         ids=[f"{f}={v!r}"[:60] for f, v in BAD_EXPERT])
def test_bad_expert_values_name_the_field(admin: Admin, field: str, value: Any) -> None:
    name = field.split(".")[0]
    eid = expert(admin).json["id"]
    for r in (expert(admin, **{name: value}),
              admin("PATCH", f"/experts/{eid}", {name: value})):
        assert r.status_code == 400, r.text
        assert r.json["error"]["code"] == "invalid_request"
        assert name in r.json["error"]["message"]
    assert admin("GET", f"/experts/{eid}").json["priority"] == 50


def test_the_bounds_are_accepted(admin: Admin) -> None:
    s = service(admin, seats=1000, limits={"day": 1, "week": 10_000}).json
    assert s["seats"] == 1000 and s["limits"] == {"day": 1, "week": 10_000}
    e = expert(admin, priority=0, weight=100, bio="x" * 500,
               photo_url="https://a.example.com:8443/" + "p" * 1970).json
    assert e["priority"] == 0 and e["weight"] == 100 and len(e["bio"]) == 500
    assert expert(admin, weight=1, priority=100).json["weight"] == 1


def test_other_shop_cannot_see_the_fields(admin: Admin, other_admin: Admin) -> None:
    sid = service(admin, seats=4, questions=QUESTIONS).json["id"]
    assert other_admin("GET", f"/services/{sid}").status_code == 404
    assert other_admin("PATCH", f"/services/{sid}", {"seats": 9}).status_code == 404
    assert admin("GET", f"/services/{sid}").json["seats"] == 4


def test_openapi_documents_the_fields(admin: Admin) -> None:
    doc = admin.client.simulate_get("/openapi.json").json
    schemas = doc["components"]["schemas"]
    service_props = schemas["ServiceCreate"]["properties"]
    assert service_props["seats"]["maximum"] == 1000
    assert set(service_props["limits"]["properties"]) == {"day", "week", "month"}
    assert service_props["assignment"]["enum"] == ["least_booked", "priority"]
    assert service_props["questions"]["maxItems"] == 20
    expert_props = schemas["ExpertCreate"]["properties"]
    assert {"limits", "priority", "weight", "photo_url", "bio"} <= set(expert_props)
    assert set(schemas["Service"]["required"]) >= set(SERVICE_DEFAULTS)
    assert set(schemas["Expert"]["required"]) >= set(EXPERT_DEFAULTS)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                       | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(["day", "week", "month", "x", "id",
                                                          "label", "type", "choices"]),
                                         inner, max_size=4), max_leaves=10)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["seats", "limits", "assignment", "questions"]), JSONISH)
def test_any_value_is_stored_or_a_400(admin: Admin, name: str, value: Any) -> None:
    r = service(admin, **{name: value})
    assert r.status_code in (201, 400), r.text
    if r.status_code == 201:
        assert admin("GET", f"/services/{r.json['id']}").json == r.json


@settings(max_examples=300, deadline=None)
@given(JSONISH | st.text() | st.from_regex(r"https://[a-z.:@/ ?#\\\"<>0-9-]{0,30}"))
def test_the_field_parsers_raise_only_validation_errors(value: Any) -> None:
    from engine.errors import ValidationError
    from engine.services import validation

    for parse in (validation.limits, validation.https_url, validation.plain_text(500),
                  validation.one_of("least_booked", "priority")):
        try:
            out = parse("f", value)
        except ValidationError as err:
            assert err.field is not None and err.field.startswith("f")
            continue
        assert parse("f", out) == out if out is not None else True  # stable
    try:
        url = validation.https_url("f", value)
    except ValidationError:
        return
    assert url.startswith("https://") and not any(c in url for c in " \"'<>\\\n")
    assert "@" not in url.split("/")[2]  # no user info (an @ later in the path is fine)
