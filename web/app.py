"""The WSGI application: ``create_app(ctx)`` for tests, ``get_app()`` for servers.

``gunicorn 'web.app:get_app()'`` serves it; ``consultbook serve`` does exactly that.
"""

from __future__ import annotations

from typing import Any

import falcon
import orjson

from engine.bootstrap import Context, bootstrap
from engine.config import Config, from_env
from engine.store.migrate import check_schema
from web import admin, connections, demo, errors, health, pages, proxy, webhooks
from web.auth import AuthMiddleware
from web.guard import InputGuard
from web.install import register as register_install


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
    admin.register(app, ctx)
    pages.register(app, ctx)
    webhooks.register(app, ctx)
    register_install(app, ctx)
    connections.register(app, ctx)
    if ctx.config.demo:
        demo.register(app, ctx)
    return app


def get_app(config: Config | None = None) -> falcon.App:
    """The app for a server process: configuration from the environment, schema checked."""
    ctx = bootstrap(config or from_env())
    check_schema(ctx.db.engine)
    return create_app(ctx)
