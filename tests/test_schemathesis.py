"""Schemathesis against the app, with the document the app serves (``GET /openapi.json``).

Every documented operation is fuzzed with requests generated from the document, on
SQLite and PostgreSQL, authenticated as a real client would be (App Proxy calls signed,
admin calls with a session token, webhooks with the body's HMAC), and every answer is
checked: never a 5xx, and status code, content type, headers and body as documented.
A seeded shop (a service, an expert with hours, a booking) gives the generated
requests real ids half the time, so that success bodies are checked too, not only
the 404s of random ids.

Bounded: a fixed number of examples per operation, derandomized, no example database
(the run is the same on every machine; the whole file takes well under two minutes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.services.shops import ShopRef, install_shop
from engine.shopify import sign_proxy, webhook_hmac
from tests.conftest import (
    Admin,
    Storefront,
    admin_headers,
    make_catalog,
    make_config,
    order_payload,
)
from tests.test_openapi import served_app
from web import openapi

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES = 12

#: Operations where the app (not the document) is known to answer otherwise: label ->
#: reason. Each is xfail(strict=True): fixing the app makes the test fail until the entry
#: goes. Empty while the app conforms.
APP_DEFECTS: dict[str, str] = {}

_METHODS = ("get", "put", "post", "delete", "patch")
_CORE = openapi.build_document()
OPERATIONS = sorted(f"{m.upper()} {path}" for path, item in _CORE["paths"].items()
                    for m in item if m in _METHODS)


def _param(label: str) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=APP_DEFECTS[label])] \
        if label in APP_DEFECTS else []
    return pytest.param(label, marks=marks, id=label)


class World:
    """The app, its seeded shop and the schemathesis schema loaded from the app."""

    def __init__(self, ctx: Context, shop: ShopRef) -> None:
        self.ctx, self.shop = ctx, shop
        self.statuses: list[int] = []
        self.app = served_app(ctx)
        client = falcon.testing.TestClient(self.app)
        admin = Admin(client, ctx, shop.domain)
        catalog = make_catalog(admin)
        store = Storefront(client, ctx, shop.domain)
        hold = store.hold(catalog["service"], catalog["expert"], "2026-12-01T09:00:00Z")
        assert hold.status_code == 201, hold.text
        paid = store.webhook("orders/paid", order_payload(1001, [hold.json["hold"]]))
        assert paid.status_code == 200, paid.text
        booking = admin("GET", "/bookings").json["bookings"][0]["id"]
        self.ids = {"services": catalog["service"], "experts": catalog["expert"],
                    "bookings": booking, "holds": hold.json["hold"]}
        self.schema = schemathesis.openapi.from_wsgi(openapi.PATH, self.app)

    def fixed_path(self, path: str) -> dict[str, str]:
        """Real ids for an operation's path parameters, where the shop has one."""
        match = re.match(r"^/(?:admin/api|proxy)/([a-z-]+)/\{(item_id|hold_id)\}", path)
        if match and match.group(1) in self.ids:
            return {match.group(2): self.ids[match.group(1)]}
        return {}

    def sign(self, case: Any) -> dict[str, Any]:
        """Authenticate ``case`` as the operation's security says; the extra keyword
        arguments for ``call_and_validate`` (a webhook's exact body)."""
        path = case.operation.path
        now = int(self.ctx.clock.now().timestamp())
        if path.startswith("/proxy/"):
            query = {k: _text(v) for k, v in dict(case.query or {}).items()
                     if k != "signature"}
            query.update(shop=self.shop.domain, timestamp=str(now),
                         path_prefix="/apps/consult")
            query["signature"] = sign_proxy(query, _secret(self.ctx))
            case.query = query
        elif path.startswith("/admin/api/") or path == "/auth/token-exchange":
            case.headers = {**(case.headers or {}), **admin_headers(self.ctx,
                                                                    self.shop.domain)}
        elif path == "/webhooks":
            raw = b"" if case.body is None else json.dumps(case.body).encode()
            headers = {k: v for k, v in (case.headers or {}).items()
                       if k.lower() != "x-shopify-hmac-sha256"}
            headers["X-Shopify-Hmac-Sha256"] = webhook_hmac(raw, _secret(self.ctx))
            headers["Content-Type"] = "application/json"
            case.headers = headers
            return {"data": raw}
        return {}


def _secret(ctx: Context) -> str:
    return ctx.config.api_secret


def _text(value: Any) -> str | list[str]:
    """A generated query value as the text a browser would send (what is signed)."""
    if isinstance(value, list):
        return [item for v in value for item in ([_text(v)] if not isinstance(v, list)
                                                 else _text(v))]  # type: ignore[list-item]
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


#: Operations that call Shopify or a provider: here every outbound origin is a closed
#: port on 127.0.0.1, so they answer the documented 502 (``shopify_unavailable``...),
#: which is the right answer for an upstream that is down, not a failure of the app.
UPSTREAM = {"POST /auth/token-exchange", "GET /auth/callback", "GET /auth/{item_id}/callback",
            "POST /auth/{item_id}/callback", "POST /admin/api/connections/{item_id}"}
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused


@pytest.fixture
def world(db_url: str, clock: FixedClock) -> Iterator[World]:
    from engine.config import ORIGIN_VARIABLES

    origins = {name: CLOSED for name, _ in ORIGIN_VARIABLES.values()}
    ctx = bootstrap(make_config(db_url, origins=origins), clock=clock)
    try:
        shop = install_shop(ctx.db, ctx.clock, ctx.keyring, "alpha.myshopify.com",
                            "Europe/Berlin", access_token="shpat_alpha")
        yield World(ctx, shop)
    finally:
        ctx.db.dispose()


def check(world: World, label: str, case: Any) -> None:
    """Send ``case`` authenticated and validate the answer against the document."""
    extra = world.sign(case)
    response = case.call(**extra)
    world.statuses.append(response.status_code)
    upstream = label in UPSTREAM
    case.validate_response(response, checks=[c for c in CHECKS
                                             if not (upstream and c is not_a_server_error)],
                           **({"transport_kwargs": extra} if extra else {}))
    assert response.status_code < 500 or (upstream and response.status_code == 502), (
        label, response.status_code, response.text[:300])


@pytest.mark.parametrize("label", [_param(label) for label in OPERATIONS])
def test_the_app_conforms_to_its_document(world: World, label: str) -> None:
    method, path = label.split(" ", 1)
    operation = world.schema[path][method]
    strategies = [operation.as_strategy()]
    fixed = world.fixed_path(path)
    if fixed:
        strategies.append(operation.as_strategy(path_parameters=fixed))

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        check(world, label, case)

    run()
    if path.startswith(("/proxy/", "/admin/api/")) or path == "/webhooks":
        # The signing hooks work: not everything was refused as unauthenticated.
        assert set(world.statuses) - {401}, (label, world.statuses)


def test_plugin_operations_conform(world: World) -> None:
    """The operations plugins add (x-consultbook-plugin), with their generic documents."""
    labels = [(path, m.upper()) for path, item in world.schema.raw_schema["paths"].items()
              for m, operation in item.items()
              if m in _METHODS and openapi.PLUGIN_EXTENSION in operation]
    assert labels, "the built-in plugins register routes"
    for path, method in labels:
        _fuzz_plugin_operation(world, path, method)


def _fuzz_plugin_operation(world: World, path: str, method: str) -> None:
    label = f"{method} {path}"

    @settings(max_examples=4, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=world.schema[path][method].as_strategy())
    def run(case: Any) -> None:
        check(world, label, case)

    run()


def test_the_fuzzer_catches_a_nonconforming_answer(world: World) -> None:
    """The checks can fail: an app answering /healthz other than documented, under the
    same document, is reported."""
    document = falcon.testing.TestClient(world.app).simulate_get(openapi.PATH).json

    class Document:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = document

    class Wrong:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {"status": "maybe"}

    liar = falcon.App()
    liar.add_route(openapi.PATH, Document())
    liar.add_route("/healthz", Wrong())
    case = schemathesis.openapi.from_wsgi(openapi.PATH, liar)["/healthz"]["GET"].Case()
    with pytest.raises(FailureGroup, match="Response violates schema"):
        case.call_and_validate(checks=CHECKS)
