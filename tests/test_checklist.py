"""``GET /admin/api/checklist``: the admin's first-run checklist (engine/services/checklist.py).

The four database steps turn done as the shop is set up through the admin API; the theme
step asks a fake Shopify over real HTTP on 127.0.0.1 (tests/install/fake_shopify.py, taught
here to answer the ``themes`` query) through the project's own Admin API client. Shopify
down, refusing, or the scope missing makes the step ``null``, never a 5xx. The demo's own
Shopify answers the query too, so the demo's checklist is all done.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import jsonschema
import pytest
from sqlalchemy import update

from engine.bootstrap import Context, bootstrap
from engine.clock import FixedClock
from engine.config import DEMO_API_KEY, DEMO_API_SECRET
from engine.demo import ADMIN_API_PREFIX, demo_config, seed
from engine.services import checklist as checklist_service
from engine.services.checklist import (
    THEMES_QUERY,
    ThemeCache,
    ThemeCheck,
    find_booking_block,
    is_booking_block,
    template_has_block,
    theme_editor_url,
)
from engine.services.shops import ShopRef, install_shop
from engine.store.models import Shop
from tests.conftest import API_KEY, API_SECRET, NOW, WEEKDAYS_9_17, Admin, make_config
from tests.install.fake_shopify import FakeShopify, GraphQLCall
from tests.test_demo_offline import (  # noqa: F401  (network: a fixture)
    Demo,
    Network,
    _QuietHandler,
    _ThreadingServer,
    network,
)
from web.app import create_app
from web.openapi import build_document

ALPHA_TOKEN = "shpat_alpha"
BLOCK = "shopify://apps/consultbook/blocks/booking/0b5c6d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e"
OTHER_APP = "shopify://apps/reviews/blocks/star-rating/11111111-2222-3333-4444-555555555555"


def product_template(*block_types: str, disabled: bool = False, header: bool = True) -> str:
    """A product template as Shopify writes it (auto-generated comment header, a main
    product section, an Apps section holding the app blocks)."""
    blocks = {f"b{n}": {"type": t, "settings": {}, **({"disabled": True} if disabled else {})}
              for n, t in enumerate(block_types)}
    doc = {"sections": {"main": {"type": "main-product", "blocks": {
        "title": {"type": "title", "settings": {}}}, "block_order": ["title"]},
        "apps": {"type": "apps", "blocks": blocks, "block_order": list(blocks)}},
        "order": ["main", "apps"]}
    text = json.dumps(doc, indent=2)
    return ("/*\n * IMPORTANT: The contents of this file are auto-generated.\n */\n" + text
            if header else text)


class ThemeShopify(FakeShopify):
    """The install tests' fake Shopify, also answering ``themes(roles: [MAIN])``.

    ``theme_files`` is the live theme's files; ``theme_mode`` scripts the answer:
    ``"ok"``, ``"no_theme"`` (no main theme), ``"access_denied"`` (the scope is missing:
    Shopify's ACCESS_DENIED GraphQL error)."""

    theme_files: dict[str, str]
    theme_mode: str = "ok"

    def _answer(self, call: GraphQLCall) -> Any:
        if "themes(" not in call.query:
            return super()._answer(call)
        if self.theme_mode == "access_denied":
            return {"errors": [{"message": "Access denied for themes field. Required access: "
                                           "`read_themes` access scope.",
                                "extensions": {"code": "ACCESS_DENIED"}}]}
        if self.theme_mode == "no_theme":
            return {"data": {"themes": {"nodes": []}}}
        import fnmatch

        patterns = call.variables.get("filenames") or ["*"]
        nodes = [{"filename": name, "body": {"content": content}}
                 for name, content in sorted(self.theme_files.items())
                 if any(fnmatch.fnmatchcase(name, p) for p in patterns)]
        return {"data": {"themes": {"nodes": [{
            "id": "gid://shopify/OnlineStoreTheme/1", "name": "Dawn",
            "files": {"nodes": nodes, "pageInfo": {"hasNextPage": False,
                                                    "endCursor": None}}}]}}}

    def theme_calls(self) -> list[GraphQLCall]:
        return [c for c in self.calls if "themes(" in c.query]


@pytest.fixture
def fake() -> Iterator[ThemeShopify]:
    server = ThemeShopify(API_KEY, API_SECRET, now=int(NOW.timestamp()))
    server.theme_files = {"templates/index.json": "{}",
                          "templates/product.json": product_template(OTHER_APP)}
    server.access_tokens.add(ALPHA_TOKEN)
    yield server
    server.close()


@pytest.fixture
def ctx(db_url: str, clock: FixedClock, fake: ThemeShopify) -> Iterator[Context]:
    """The root ``ctx`` with the Shopify admin origin at the fake (``client``, ``shop``
    and ``admin`` from tests/conftest.py use this one)."""
    context = bootstrap(make_config(db_url, origins={"shopify_admin": fake.origin}),
                        clock=clock)
    yield context
    context.db.dispose()


def _checklist(admin: Admin) -> dict[str, Any]:
    r = admin("GET", "/checklist")
    assert r.status_code == 200, r.text
    assert r.headers.get("Cache-Control") == "no-store"
    body = r.json
    _conforms(body)
    return dict(body["checklist"])


_SCHEMA: dict[str, Any] = {}


def _conforms(body: Any) -> None:
    """The answer matches its OpenAPI schema (web/openapi.py)."""
    if not _SCHEMA:
        doc = build_document(None)
        op = doc["paths"]["/admin/api/checklist"]["get"]
        _SCHEMA.update(op["responses"]["200"]["content"]["application/json"]["schema"])
    jsonschema.validate(body, _SCHEMA)


def _steps(checklist: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert [s["id"] for s in checklist["steps"]] == ["service", "expert", "hours", "product",
                                                     "theme_block"]
    return {s["id"]: s for s in checklist["steps"]}


def _done(checklist: dict[str, Any]) -> dict[str, bool | None]:
    return {k: v["done"] for k, v in _steps(checklist).items()}


# ------------------------------------------------------------------ the steps


def test_each_step_turns_done_as_the_shop_is_set_up(
        admin: Admin, ctx: Context, fake: ThemeShopify) -> None:
    first = _checklist(admin)
    assert _done(first) == {"service": False, "expert": False, "hours": False,
                            "product": False, "theme_block": False}
    assert (first["done"], first["total"]) == (0, 5)
    sections = {k: v["section"] for k, v in _steps(first).items()}
    assert sections == {"service": "services", "expert": "experts", "hours": "hours",
                        "product": "services", "theme_block": None}
    assert "not on a product template" in _steps(first)["theme_block"]["detail"]

    svc = admin("POST", "/services", {"title": "Intro", "duration_minutes": 30}).json["id"]
    assert _done(_checklist(admin))["service"] is True

    # An expert who delivers nothing yet does not count; assigned, they do.
    expert = admin("POST", "/experts", {"name": "Ann", "email": "ann@example.com"}).json["id"]
    now = _steps(_checklist(admin))
    assert now["expert"]["done"] is False and "none is assigned" in now["expert"]["detail"]
    assert admin("PATCH", f"/experts/{expert}", {"services": [svc]}).status_code == 200
    assert _done(_checklist(admin))["expert"] is True

    # Hours: an empty week does not count.
    assert admin("PUT", f"/experts/{expert}/schedule",
                 {"weekly": {}, "overrides": []}).status_code == 200
    assert _done(_checklist(admin))["hours"] is False
    assert admin("PUT", f"/experts/{expert}/schedule",
                 {"weekly": WEEKDAYS_9_17, "overrides": []}).status_code == 200
    assert _done(_checklist(admin))["hours"] is True

    assert admin("PATCH", f"/services/{svc}", {"product_id": "7100000000001"}).status_code == 200
    got = _checklist(admin)
    assert _done(got) == {"service": True, "expert": True, "hours": True, "product": True,
                          "theme_block": False}
    assert got["done"] == 4

    # The merchant adds the block; within the cache's minute the answer stands, after it
    # Shopify is asked again.
    fake.theme_files["templates/product.json"] = product_template(OTHER_APP, BLOCK)
    assert _done(_checklist(admin))["theme_block"] is False
    ctx.clock.advance(61)  # type: ignore[attr-defined]
    got = _checklist(admin)
    assert all(s["done"] is True for s in got["steps"]) and got["done"] == 5
    assert "templates/product.json" in _steps(got)["theme_block"]["detail"]


def test_deleted_services_and_experts_do_not_count(admin: Admin) -> None:
    svc = admin("POST", "/services", {"title": "Intro", "duration_minutes": 30,
                                      "variant_id": "4242"}).json["id"]
    expert = admin("POST", "/experts", {"name": "Ann", "email": "ann@example.com",
                                        "services": [svc]}).json["id"]
    admin("PUT", f"/experts/{expert}/schedule", {"weekly": WEEKDAYS_9_17, "overrides": []})
    assert _done(_checklist(admin)) == {"service": True, "expert": True, "hours": True,
                                        "product": True, "theme_block": False}
    assert admin("DELETE", f"/experts/{expert}").status_code in (200, 204)
    assert _done(_checklist(admin))["expert"] is False
    assert _done(_checklist(admin))["hours"] is False
    assert admin("DELETE", f"/services/{svc}").status_code in (200, 204)
    assert _done(_checklist(admin))["service"] is False
    assert _done(_checklist(admin))["product"] is False


def test_another_shops_setup_counts_nowhere(admin: Admin, other_admin: Admin) -> None:
    svc = other_admin("POST", "/services", {"title": "Theirs", "duration_minutes": 30,
                                            "product_id": "1"}).json["id"]
    other_admin("POST", "/experts", {"name": "Bo", "email": "bo@example.com",
                                     "services": [svc]})
    assert _done(_checklist(admin)) == {"service": False, "expert": False, "hours": False,
                                        "product": False, "theme_block": False}


def test_the_theme_step_links_to_the_theme_editor(admin: Admin, ctx: Context,
                                                  fake: ThemeShopify) -> None:
    step = _steps(_checklist(admin))["theme_block"]
    assert step["url"] == ("https://alpha.myshopify.com/admin/themes/current/editor"
                           f"?template=product&addAppBlockId={API_KEY}/booking"
                           "&target=newAppsSection")
    assert theme_editor_url("alpha.myshopify.com", API_KEY) == step["url"]
    # Once the block is there the link opens the product template without adding another.
    fake.theme_files["templates/product.json"] = product_template(BLOCK)
    ctx.clock.advance(61)  # type: ignore[attr-defined]
    step = _steps(_checklist(admin))["theme_block"]
    assert step["done"] is True
    assert step["url"] == ("https://alpha.myshopify.com/admin/themes/current/editor"
                           "?template=product")


# ------------------------------------------------------------------ finding the block


def test_the_block_is_found_by_its_type_in_a_product_template(
        admin: Admin, fake: ThemeShopify) -> None:
    fake.theme_files["templates/product.json"] = product_template(BLOCK)
    assert _done(_checklist(admin))["theme_block"] is True
    call = fake.theme_calls()[0]
    assert call.query == THEMES_QUERY and "roles: [MAIN]" in call.query
    assert "OnlineStoreThemeFileBodyText" in call.query
    assert call.variables["filenames"] == ["templates/product*.json"]
    assert call.token == ALPHA_TOKEN


def test_an_alternate_product_template_counts(admin: Admin, fake: ThemeShopify) -> None:
    fake.theme_files["templates/product.consultation.json"] = product_template(BLOCK)
    step = _steps(_checklist(admin))["theme_block"]
    assert step["done"] is True and "product.consultation.json" in step["detail"]


def test_a_block_elsewhere_than_a_product_template_is_not_asked_for(
        admin: Admin, fake: ThemeShopify) -> None:
    fake.theme_files["templates/index.json"] = product_template(BLOCK)
    assert _done(_checklist(admin))["theme_block"] is False


@pytest.mark.parametrize("block_type, found", [
    (BLOCK, True),
    ("shopify://apps/my-renamed-app/blocks/booking/0B5C6D1E-2F3A-4B4C-9D5E-6F7A8B9C0D1E", True),
    ("shopify://apps/consultbook/blocks/booking/not-a-uuid", True),
    ("shopify://apps/consultbook-booking/blocks/booking/x", True),
    ("shopify://apps/someone-else/blocks/booking/not-a-uuid", False),
    ("shopify://apps/consultbook/blocks/my-bookings/0b5c6d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e",
     False),
    (OTHER_APP, False),
    ("booking", False),
    ("@app", False),
    ("shopify://apps/consultbook/blocks/booking/0b5c6d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e/x", False),
])
def test_which_block_types_are_the_booking_block(block_type: str, found: bool) -> None:
    assert is_booking_block(block_type) is found


def test_templates_are_read_as_shopify_writes_them() -> None:
    assert template_has_block(product_template(BLOCK, header=True))
    assert template_has_block(product_template(BLOCK, header=False))
    assert not template_has_block(product_template(BLOCK, disabled=True))
    assert not template_has_block(product_template(OTHER_APP))
    # A block nested in a theme block, and a template that does not parse (searched as text).
    nested = {"sections": {"main": {"type": "main-product", "blocks": {"group": {
        "type": "group", "blocks": {"b": {"type": BLOCK}}}}}}}
    assert template_has_block(json.dumps(nested))
    assert template_has_block('{"sections": {"a": {"type": "' + BLOCK + '", ')
    # A setting whose text mentions the type is not a block.
    assert not template_has_block(json.dumps({"sections": {"a": {
        "type": "rich-text", "settings": {"text": BLOCK}}}}))
    assert find_booking_block([("a.json", "{}"), ("b.json", product_template(BLOCK))]) \
        == "b.json"
    assert find_booking_block([]) is None


# ------------------------------------------------------------------ when it cannot be checked


def _null_theme(admin: Admin) -> dict[str, Any]:
    checklist = _checklist(admin)
    step = _steps(checklist)["theme_block"]
    assert step["done"] is None, step
    assert step["url"] and "addAppBlockId=" in step["url"]
    assert checklist["done"] == sum(1 for s in checklist["steps"] if s["done"] is True)
    return dict(step)


def test_shopify_answering_5xx_is_an_unchecked_step_not_an_error(
        admin: Admin, fake: ThemeShopify) -> None:
    fake.plan.extend(["500"] * 10)
    step = _null_theme(admin)
    assert "did not answer" in step["detail"]
    # The web request did not sleep through retries: one call, handed back at once.
    assert len(fake.theme_calls()) == 1


def test_shopify_throttling_is_an_unchecked_step(admin: Admin, fake: ThemeShopify) -> None:
    fake.plan.extend(["429"] * 10)
    assert "did not answer" in _null_theme(admin)["detail"]


def test_shopify_hanging_is_an_unchecked_step(admin: Admin, fake: ThemeShopify,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checklist_service, "THEME_TIMEOUT", (1.0, 0.3))
    fake.hang_seconds = 1.5
    fake.plan.append("hang")
    assert "did not answer" in _null_theme(admin)["detail"]


def test_shopify_unreachable_is_an_unchecked_step(db_url: str, clock: FixedClock) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    context = bootstrap(make_config(db_url, origins={"shopify_admin": closed}), clock=clock)
    try:
        shop = install_shop(context.db, clock, context.keyring, "alpha.myshopify.com",
                            "Europe/Berlin", access_token=ALPHA_TOKEN)
        client = falcon.testing.TestClient(create_app(context))
        assert "did not answer" in _null_theme(Admin(client, context, shop.domain))["detail"]
    finally:
        context.db.dispose()


def test_a_refused_token_is_an_unchecked_step(admin: Admin, fake: ThemeShopify) -> None:
    fake.revoke(ALPHA_TOKEN)
    assert "refused the shop's access token" in _null_theme(admin)["detail"]


def test_shopify_denying_the_scope_is_an_unchecked_step(admin: Admin,
                                                        fake: ThemeShopify) -> None:
    fake.theme_mode = "access_denied"
    assert "read_themes" in _null_theme(admin)["detail"]


def test_a_shop_without_a_main_theme_is_an_unchecked_step(admin: Admin,
                                                          fake: ThemeShopify) -> None:
    fake.theme_mode = "no_theme"
    assert "no published theme" in _null_theme(admin)["detail"]


def test_a_granted_scope_list_without_read_themes_does_not_ask_shopify(
        admin: Admin, ctx: Context, shop: ShopRef, fake: ThemeShopify) -> None:
    with ctx.db.write() as session:
        session.execute(update(Shop).where(Shop.id == shop.id).values(
            scopes="read_orders,write_orders,read_products"))
    step = _null_theme(admin)
    assert "read_themes" in step["detail"] and "approve" in step["detail"]
    assert fake.theme_calls() == []
    with ctx.db.write() as session:
        session.execute(update(Shop).where(Shop.id == shop.id).values(
            scopes="read_orders,write_orders,read_products,read_themes"))
    assert _done(_checklist(admin))["theme_block"] is False
    assert len(fake.theme_calls()) == 1


def test_a_shop_without_a_token_is_an_unchecked_step(other_admin: Admin,
                                                     fake: ThemeShopify) -> None:
    step = _null_theme(other_admin)
    assert "no Shopify access token" in step["detail"]
    assert step["url"].startswith("https://beta.myshopify.com/admin/themes/current/editor")
    assert fake.theme_calls() == []


# ------------------------------------------------------------------ the cache


def test_the_theme_answer_is_cached_a_minute_per_shop(
        admin: Admin, ctx: Context, fake: ThemeShopify) -> None:
    for _ in range(3):
        _checklist(admin)
    assert len(fake.theme_calls()) == 1
    ctx.clock.advance(59)  # type: ignore[attr-defined]
    _checklist(admin)
    assert len(fake.theme_calls()) == 1
    ctx.clock.advance(2)  # type: ignore[attr-defined]
    _checklist(admin)
    assert len(fake.theme_calls()) == 2


def test_an_unchecked_answer_is_kept_only_briefly(
        admin: Admin, ctx: Context, fake: ThemeShopify) -> None:
    fake.plan.append("500")
    assert _done(_checklist(admin))["theme_block"] is None
    assert _done(_checklist(admin))["theme_block"] is None
    assert len(fake.theme_calls()) == 1
    ctx.clock.advance(16)  # type: ignore[attr-defined]
    assert _done(_checklist(admin))["theme_block"] is False
    assert len(fake.theme_calls()) == 2


def test_the_cache_is_per_shop_and_survives_no_clock_going_back() -> None:
    cache = ThemeCache(ttl=60, error_ttl=15)
    found, unchecked = ThemeCheck(True, "found"), ThemeCheck(None, "down")
    cache.put("a", NOW, found)
    cache.put("b", NOW, unchecked)
    from datetime import timedelta

    assert cache.get("a", NOW + timedelta(seconds=59)) == found
    assert cache.get("b", NOW + timedelta(seconds=14)) == unchecked
    assert cache.get("b", NOW + timedelta(seconds=15)) is None
    assert cache.get("a", NOW - timedelta(seconds=1)) is None  # the clock went back
    assert cache.get("c", NOW) is None
    small = ThemeCache(max_entries=2)
    for key in "xyz":
        small.put(key, NOW, found)
    assert small.get("z", NOW) == found


# ------------------------------------------------------------------ auth


def test_the_checklist_needs_the_admin_session_token(
        client: falcon.testing.TestClient, shop: ShopRef, fake: ThemeShopify) -> None:
    r = client.simulate_get("/admin/api/checklist")
    assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"
    r = client.simulate_get("/admin/api/checklist",
                            headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and set(r.json["error"]) == {"code", "message"}
    r = client.simulate_post("/admin/api/checklist", headers={"Authorization": "Bearer x"})
    assert r.status_code in (401, 405)
    assert fake.theme_calls() == []


def test_an_unknown_shop_is_403(client: falcon.testing.TestClient, ctx: Context) -> None:
    r = Admin(client, ctx, "nobody.myshopify.com")("GET", "/checklist")
    assert r.status_code == 403 and set(r.json["error"]) == {"code", "message"}


# ------------------------------------------------------------------ the demo


@pytest.fixture
def demo(db_url: str, tmp_path: Path, network: Network) -> Iterator[Demo]:  # noqa: F811
    """``consultbook demo`` over HTTP: its Shopify admin origin is the demo itself."""
    server = _ThreadingServer(("127.0.0.1", 0), _QuietHandler)
    port = int(server.server_address[1])
    base = f"http://127.0.0.1:{port}"
    outbox = tmp_path / "outbox"
    config = demo_config(make_config(db_url, demo=True, outbox_dir=str(outbox),
                                     api_key=DEMO_API_KEY, api_secret=DEMO_API_SECRET,
                                     app_url=base), host="127.0.0.1", port=port)
    assert config.origins["shopify_admin"] == f"{base}{ADMIN_API_PREFIX}"
    context = bootstrap(config)
    shop = seed(context)
    server.set_app(create_app(context))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        from web.demo_shopify import Ledger

        yield Demo(base, context, shop, Ledger(outbox), outbox)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        context.db.dispose()


def test_in_the_demo_every_step_is_done(demo: Demo, network: Network) -> None:  # noqa: F811
    r = demo.admin("GET", "/checklist")
    assert r.status_code == 200, r.text
    body = r.json()
    _conforms(body)
    assert [s["done"] for s in body["checklist"]["steps"]] == [True] * 5
    assert body["checklist"]["done"] == 5
    step = body["checklist"]["steps"][4]
    assert "templates/product.json" in step["detail"]
    assert any(call.operation == "themes" for call in demo.ledger.calls())
    assert not network.refused  # nothing left the machine
