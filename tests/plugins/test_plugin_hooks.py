"""The registration hooks of issue 10 (jobs, routes, secrets, migration folders), each
made to run by the engine itself (test_meta.py checks that), plus the host's checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from engine import hookimpl
from engine.bootstrap import Context
from engine.clock import FixedClock
from engine.providers import (
    JobHost,
    JobRegistry,
    PluginError,
    RouteHost,
    RouteRegistry,
    SecretRegistry,
)
from engine.services.providers import Plugins
from engine.services.secrets import all_columns, register_plugin_columns
from engine.services.shops import ShopRef
from engine.tasks import jobs as jobs_module
from plugins.calendar_local.models import IcsFeed
from tests.conftest import NOW, admin_headers
from web.app import create_app


def load(ctx: Context, *extra: tuple[str, object]) -> Plugins:
    return Plugins.load(ctx.config, ctx.db, ctx.keyring, FixedClock(NOW), extra=extra)


class Ticker:
    runs: list[str] = []

    @hookimpl
    def consultbook_register_jobs(self, jobs: JobRegistry) -> None:
        def tick(host: JobHost) -> Mapping[str, Any]:
            Ticker.runs.append(host.clock.now().isoformat())
            return {"shops": len(list(host.shops()))}

        jobs.add("ticker_tick", 60, tick)


def test_hook_consultbook_register_jobs(ctx: Context, shop: ShopRef) -> None:
    Ticker.runs.clear()
    plugins = load(ctx, ("ticker", Ticker()))
    # The test's job beside the installed plugins' own (the local calendar's feeds, the
    # push channels' renewals...).
    names = [j.name for j in plugins.jobs]
    assert "ticker_tick" in names and "local_ics_feeds" in names
    assert len(names) == len(set(names))
    deps = jobs_module.Deps(ctx.config, ctx.db, ctx.clock, plugins)
    assert jobs_module.plugin_schedule(deps)["plugin:ticker_tick"] == 60
    assert jobs_module.run_plugin_job(deps, "plugin:ticker_tick", "a") == {"shops": 1}
    # Once per period across processes: a second scheduler in the same period skips.
    assert jobs_module.run_plugin_job(deps, "ticker_tick", "b") == {"skipped": 1}
    assert len(Ticker.runs) == 1


class Hello:
    @hookimpl
    def consultbook_register_routes(self, routes: RouteRegistry) -> None:
        class Resource:
            def __init__(self, host: RouteHost) -> None:
                self.host = host

            def on_get(self, req: Any, resp: Any) -> None:
                resp.media = {"shop": req.context.shop.domain,
                              "q": self.host.query_params(req).get("q")}

        class Open:
            def __init__(self, host: RouteHost) -> None:
                self.host = host

            def on_post(self, req: Any, resp: Any) -> None:
                resp.media = {"got": self.host.read_json(req)}

        routes.add("/admin/api/hello", Resource, auth="admin")
        routes.add("/hooks/hello/ping", Open, auth="none")


def test_hook_consultbook_register_routes(ctx: Context, shop: ShopRef) -> None:
    ctx.plugins = load(ctx, ("hello", Hello()))
    client = falcon.testing.TestClient(create_app(ctx))
    r = client.simulate_get("/admin/api/hello", params={"q": "x"},
                            headers=admin_headers(ctx, shop.domain))
    assert r.status_code == 200 and r.json == {"shop": shop.domain, "q": "x"}
    # auth="admin" is enforced by the engine: no token, no answer.
    assert client.simulate_get("/admin/api/hello").status_code == 401
    r = client.simulate_post("/hooks/hello/ping", body=b'{"a": 1}',
                             headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json == {"got": {"a": 1}}
    bad = client.simulate_post("/hooks/hello/ping", body=b'{"a": ',
                               headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json["error"]["code"]


class Feeds:
    @hookimpl
    def consultbook_register_secrets(self, secrets: SecretRegistry) -> None:
        secrets.add_column(IcsFeed.__table__, "name", lambda row: f"x:{row.id}")


def test_hook_consultbook_register_secrets(ctx: Context, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from engine.services import secrets as secrets_module

    # The registration is per process: give this test a copy, so the test's own column
    # (a plain-text one) is not rotated by the tests that come after it.
    monkeypatch.setattr(secrets_module, "_PLUGIN_COLUMNS",
                        dict(secrets_module._PLUGIN_COLUMNS))
    plugins = load(ctx, ("feeds", Feeds()))
    columns = {(c.table.name, c.column) for c in plugins.loaded.secrets}
    assert ("ics_feeds", "url") in columns and ("ics_feeds", "name") in columns
    register_plugin_columns(plugins.loaded.secrets)
    assert ("ics_feeds", "name") in {(c.table.name, c.column) for c in all_columns()}


class Folders:
    def __init__(self, path: str) -> None:
        self.path = path

    @hookimpl
    def consultbook_migration_locations(self) -> Sequence[str]:
        return [self.path]


def test_hook_consultbook_migration_locations(ctx: Context, tmp_path: Path) -> None:
    plugins = load(ctx, ("folders", Folders(str(tmp_path))))
    assert str(tmp_path) in plugins.loaded.migration_locations
    with pytest.raises(PluginError, match="folders"):
        load(ctx, ("folders", Folders("relative/path")))


@pytest.mark.parametrize("path, auth", [
    ("/admin/hello", "admin"), ("/proxy", "proxy"), ("/hooks/other/x", "none"),
    ("/webhooks/x", "none"), ("/admin/api/x", "sometimes"), ("no-slash", "admin"),
])
def test_routes_outside_their_prefix_fail_loading(ctx: Context, path: str, auth: str) -> None:
    class Bad:
        @hookimpl
        def consultbook_register_routes(self, routes: RouteRegistry) -> None:
            routes.add(path, lambda host: object(), auth=auth)

    with pytest.raises(PluginError):
        load(ctx, ("bad", Bad()))


def test_a_route_the_engine_serves_fails_start_up(ctx: Context) -> None:
    class Shadow:
        @hookimpl
        def consultbook_register_routes(self, routes: RouteRegistry) -> None:
            routes.add("/admin/api/connections", lambda host: object(), auth="admin")

    ctx.plugins = load(ctx, ("shadow", Shadow()))
    with pytest.raises(PluginError, match="shadow"):
        create_app(ctx)
