"""The WSGI application: ``create_app(ctx)`` for tests, ``get_app()`` for servers.

``gunicorn 'web.app:get_app()'`` serves it; ``consultbook serve`` does exactly that.
"""

from __future__ import annotations

from typing import Any

import falcon
import orjson

from engine.bootstrap import Context, bootstrap
from engine.config import Config, from_env
from engine.plugins import PluginError
from engine.services.providers import Host
from engine.store.migrate import check_schema
from web import (
    admin,
    checklist,
    connections,
    demo,
    errors,
    health,
    manage,
    observability,
    openapi,
    pages,
    proxy,
    stats,
    waitlist,
    webhooks,
)
from web.auth import AuthMiddleware
from web.common import query_params, read_json
from web.guard import InputGuard
from web.install import register as register_install


class RouteHost(Host):
    """The :class:`~engine.providers.RouteHost` plugin route factories get: the host, and
    the web layer's strict request readers."""

    def read_json(self, req: falcon.Request) -> Any:
        return read_json(req)

    def query_params(self, req: falcon.Request) -> dict[str, str]:
        return query_params(req)


def register_plugin_routes(app: falcon.App, ctx: Context) -> None:
    """Mount every route plugins registered (``consultbook_register_routes``). The route's
    ``auth`` is imposed on the resource, so AuthMiddleware authenticates it exactly like
    the engine's own; a path the engine already serves stops start-up."""
    host = RouteHost(ctx.plugins)
    routes = ctx.plugins.loaded.routes
    # All checked before any is added: Falcon compiles its router again on the first
    # find after a change, and that compile was most of an app's construction.
    for route in routes:
        sample = route.path.replace("{", "").replace("}", "")
        if app._router.find(route.path) is not None or app._router.find(sample) is not None:
            raise PluginError(f"plugin {route.plugin!r} registers {route.path}, which the "
                              "engine serves already")
    for route in routes:
        resource = route.factory(host)
        resource.auth = None if route.auth == "none" else route.auth  # type: ignore[attr-defined]
        app.add_route(route.path, resource)


def create_app(ctx: Context) -> falcon.App:
    # The input guard runs first: no malformed path, query or body size reaches the auth
    # middleware (which reads the database) or a resource.
    middleware: list[Any] = [InputGuard(), AuthMiddleware(ctx)]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    # orjson renders response documents several times faster than the json module (a
    # month of slots is a few hundred objects); requests still parse with json.loads.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(
        dumps=orjson.dumps)
    errors.install(app)
    health.register(app, ctx)
    proxy.register(app, ctx)
    manage.register(app, ctx)
    waitlist.register(app, ctx)
    admin.register(app, ctx)
    stats.register(app, ctx)
    checklist.register(app, ctx)
    pages.register(app, ctx)
    webhooks.register(app, ctx)
    register_install(app, ctx)
    connections.register(app, ctx)
    register_plugin_routes(app, ctx)
    if ctx.config.demo:
        demo.register(app, ctx)
    # Request ids, the access log and /metrics; then the OpenAPI document of every route
    # above (built from the router on its first request).
    observability.install(app, ctx)
    openapi.install(app, ctx)
    return app


def get_app(config: Config | None = None) -> falcon.App:
    """The app for a server process: configuration from the environment, schema checked."""
    ctx = bootstrap(config or from_env())
    check_schema(ctx.db.engine, ctx.plugins.loaded.migration_locations)
    return create_app(ctx)
