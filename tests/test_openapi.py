"""``GET /openapi.json`` (web/openapi.py): a valid OpenAPI 3.1 document that names
exactly the routes and methods the app serves, and whose field schemas accept what the
validation tables accept."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.inspect
import falcon.testing
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_spec

from engine.bootstrap import Context, bootstrap
from engine.errors import ValidationError
from engine.services import catalog, shops
from engine.services.validation import MISSING, Field
from tests.conftest import make_config
from web import openapi
from web.app import create_app


def served_app(ctx: Context) -> falcon.App:
    """The app as create_app builds it, plus /openapi.json (which the lead adds to
    create_app; until then the tests install it themselves)."""
    app = create_app(ctx)
    # The router's own lookup: falcon.inspect.inspect_routes reads every responder's
    # source (an ast.parse per route), a third of what a schemathesis test's setup cost.
    if app._router.find(openapi.PATH) is None:
        openapi.install(app, ctx)
    return app


def fetch(app: falcon.App) -> dict[str, Any]:
    result = falcon.testing.TestClient(app).simulate_get(openapi.PATH)
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = result.json
    return doc


def demo_route(path: str) -> bool:
    """The exclusion rule for web.demo's routes (only mounted under ``demo``)."""
    return any(path == p or path.startswith(p + "/") for p in openapi.DEMO_PREFIXES)


def served_operations(app: falcon.App) -> set[tuple[str, str]]:
    """(path, method) for every route the app serves, from Falcon's own inspection of
    its router: responder methods, not Falcon's internal OPTIONS/405 responders; the
    static route as ``<prefix>/{file}``."""
    info = falcon.inspect.inspect_app(app)
    out = {(r.path, m.method) for r in info.routes for m in r.methods if not m.internal}
    for static in info.static_routes:
        out.add((static.prefix.rstrip("/") + "/{file}", "GET"))
    return out


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(path, m.upper()) for path, item in doc["paths"].items() for m in item
            if m in methods}


@pytest.fixture
def app(ctx: Context) -> falcon.App:
    return served_app(ctx)


def test_document_is_a_valid_openapi_31_document(app: falcon.App) -> None:
    doc = fetch(app)
    assert doc["openapi"].startswith("3.1")
    validate_spec(doc)  # raises OpenAPIValidationError with the offending path


def test_every_served_route_is_documented_and_nothing_else(app: falcon.App) -> None:
    doc = fetch(app)
    served = served_operations(app)
    documented = documented_operations(doc)
    assert sorted(served - documented) == [], "served but not in /openapi.json"
    assert sorted(documented - served) == [], "in /openapi.json but not served"


def test_the_router_walk_sees_a_route_added_later(ctx: Context) -> None:
    """The check above can fail: an undocumented route and a removed one are seen."""
    app = served_app(ctx)

    class Extra:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {}

    app.add_route("/admin/api/undocumented", Extra())
    doc = openapi.build_document(ctx, app)
    assert ("/admin/api/undocumented", "GET") in served_operations(app) - \
        documented_operations(doc)
    del doc["paths"]["/healthz"]
    assert ("/healthz", "GET") in served_operations(app) - documented_operations(doc)


def test_plugin_routes_are_listed_under_the_extension(ctx: Context, app: falcon.App) -> None:
    doc = fetch(app)
    routes = list(ctx.plugins.loaded.routes)
    plugin_paths = {r.path: r for r in routes}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            route = plugin_paths.get(path)
            if route is None:
                assert openapi.PLUGIN_EXTENSION not in operation, (path, method)
                continue
            assert operation[openapi.PLUGIN_EXTENSION] == route.plugin
            scheme = {"admin": "sessionToken", "proxy": "appProxySignature"}.get(route.auth)
            assert operation["security"] == ([{scheme: []}] if scheme else [])
    assert {r.path for r in routes} <= set(doc["paths"])


def test_demo_routes_are_all_under_the_excluded_prefix(tmp_path: Any) -> None:
    ctx = bootstrap(make_config(f"sqlite:///{tmp_path}/demo.db", demo=True))
    try:
        app = served_app(ctx)
        doc = openapi.build_document(ctx, app)
        extra = served_operations(app) - documented_operations(doc)
        assert extra, "the demo mounts routes of its own"
        assert sorted(path for path, _ in extra if not demo_route(path)) == []
    finally:
        ctx.db.dispose()


def test_errors_have_the_error_shape_and_503_says_when_to_retry(app: falcon.App) -> None:
    doc = fetch(app)
    responses = doc["components"]["responses"]
    for name, response in responses.items():
        assert response["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}, name
    assert responses["E503"]["headers"]["Retry-After"]["required"] is True
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status == "default":
                    # Only a plugin's own answers are left open (any status, any type).
                    assert "x-consultbook-plugin" in operation, (path, method)
                    continue
                if int(status) < 400:
                    continue
                if "$ref" in response:
                    assert response["$ref"] == f"#/components/responses/E{status}"
                    continue
                # Inline: /readyz's 503 (NotReady, which carries the error) and the
                # booking page's Liquid answers.
                json_schema = response["content"]["application/json"]["schema"]
                assert json_schema["$ref"] in {"#/components/schemas/Error",
                                               "#/components/schemas/NotReady"}, (
                    path, method, status)
                if status == "503":
                    assert "Retry-After" in response["headers"]
            if path != "/webhooks" and operation.get("requestBody"):
                assert "413" in operation["responses"], (path, method)
    not_ready = doc["components"]["schemas"]["NotReady"]
    assert "unavailable" in not_ready["required"]


def test_security_schemes(app: falcon.App) -> None:
    doc = fetch(app)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["appProxySignature"] == {**schemes["appProxySignature"], "type": "apiKey",
                                            "in": "query", "name": "signature"}
    assert schemes["sessionToken"]["scheme"] == "bearer"
    assert schemes["webhookHmac"]["name"] == "X-Shopify-Hmac-Sha256"
    for path, item in doc["paths"].items():
        for operation in item.values():
            expected = ([{"appProxySignature": []}] if path.startswith("/proxy/") else
                        [{"sessionToken": []}] if path.startswith("/admin/api/") else
                        [{"webhookHmac": []}] if path == "/webhooks" else None)
            if expected is not None:
                assert operation["security"] == expected, path
    headers = {p["name"] for p in doc["paths"]["/webhooks"]["post"]["parameters"]}
    assert {"X-Shopify-Topic", "X-Shopify-Shop-Domain", "X-Shopify-Webhook-Id"} <= headers


def test_settings_booking_and_refund_fields(ctx: Context, app: falcon.App) -> None:
    schemas = fetch(app)["components"]["schemas"]
    providers = {k: list(ctx.plugins.registry.names(k)) for k in ("calendar", "video", "mail")}
    fields = shops.settings_fields(providers)
    read = schemas["SettingsRead"]
    assert set(read["properties"]) == {*fields, "choices"}
    assert read["properties"]["choices"]["readOnly"] is True
    pending = schemas["SettingsWrite"]["properties"]["pending_hold_hours"]
    assert (pending["minimum"], pending["maximum"], pending["default"]) == (1, 720, 48)
    assert schemas["SettingsWrite"]["properties"]["calendar_provider"]["enum"] == \
        sorted(providers["calendar"])
    for name in ("customer_timezone", "seats", "amount", "currency"):
        assert name in schemas["Booking"]["required"]
    assert "refund" in schemas["CancelledBooking"]["allOf"][1]["required"]
    assert "quantity" in schemas["Refund"]["required"]


# ------------------------------------------------ schemas agree with the validation tables

TABLES: dict[str, tuple[dict[str, Field], str, str]] = {
    "service": (catalog.SERVICE_FIELDS, "ServiceCreate", "ServicePatch"),
    "expert": (catalog.EXPERT_FIELDS, "ExpertCreate", "ExpertPatch"),
    "settings": (shops.SETTINGS_FIELDS, "SettingsWrite", "SettingsWrite"),
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_request_schemas_are_the_validation_tables(table: str) -> None:
    fields, create, patch = TABLES[table]
    schemas = openapi.build_document()["components"]["schemas"]
    props = {k: v for k, v in schemas[create]["properties"].items() if k != "choices"}
    assert set(props) == set(fields)
    assert sorted(schemas[create].get("required", [])) == sorted(
        n for n, f in fields.items() if f.default is MISSING)
    assert "required" not in schemas[patch]
    assert schemas[create]["additionalProperties"] is False


def test_an_unknown_parser_stops_the_build() -> None:
    with pytest.raises(openapi.UndocumentedField):
        openapi.field_schema("x", Field(lambda name, value: value))


_DOC = openapi.build_document()


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """A validator of ``schema`` whose ``#/components/...`` references resolve to the
    document's components."""
    return jsonschema.Draft202012Validator({**schema, "components": _DOC["components"]})


FIELDS = [(table, name, f) for table, (fields, _, _) in sorted(TABLES.items())
          for name, f in fields.items()]
values = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10 ** 6), st.integers(-(10 ** 21), 10 ** 21),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=300),
    st.sampled_from(["Europe/Berlin", "UTC", "Mars/Olympus", "a@example.com", "not-an-email",
                     "12345", "gid://shopify/ProductVariant/808950810", "0123", " x ",
                     "local", "google", "outbox", "smtp", "none", ""]),
    st.lists(st.integers(-5, 100_000), max_size=12), st.lists(st.text(max_size=5), max_size=4),
)
# Text fields are trimmed before their length is checked, and an email must also pass
# the mailer's address test; a Shopify id may also be sent as a JSON integer: there the
# document promises less than the code accepts (what it calls valid is accepted; not
# the other way round).
ONE_WAY = {"title", "name", "email", "product_id", "variant_id"}


@pytest.mark.parametrize(("table", "name", "field"), FIELDS,
                         ids=[f"{t}.{n}" for t, n, _ in FIELDS])
@settings(max_examples=150, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_field_schema_accepts_what_the_parser_accepts(table: str, name: str, field: Field,
                                                      value: Any) -> None:
    schema = openapi.field_schema(name, field)
    schema = {k: v for k, v in schema.items() if k != "default"}
    documented = _validator(schema).is_valid(value)
    if value is None:
        accepted = field.nullable
    else:
        try:
            field.parse(name, value)
            accepted = True
        except ValidationError:
            accepted = False
    if documented:
        assert accepted, f"the document calls {value!r} valid for {name}; the app refuses it"
    if name not in ONE_WAY:
        assert documented == accepted, (name, value)
