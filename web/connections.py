"""Provider connections and the local calendar, as the merchant drives them.

* ``GET /auth/<provider>/start`` -- the merchant's browser (top-level, so the session
  token comes as ``?id_token=`` or as ``Authorization: Bearer``) is sent to the provider's
  consent page; ``?format=json`` answers ``{"authorize_url": ...}`` instead.
* ``GET /auth/<provider>/callback`` -- state checked (known, unexpired, single use),
  code exchanged, credentials stored encrypted; 302 back to ``/admin`` with the outcome.
* ``GET /admin/api/connections`` -- connections, chosen providers, problems, and which
  experts' slots are hidden because their busy time cannot be read (and why).
* ``POST|DELETE /admin/api/connections/<provider>`` -- an authorize URL / disconnect.
* ``/admin/api/calendar/busy[/<id>]`` and ``/admin/api/calendar/feeds[/<id>[/refresh]]``
  -- the local calendar's busy blocks and ICS feeds.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import falcon

from engine.bootstrap import Context
from engine.services import connections
from engine.services.shops import ShopRef, installed_shop
from plugins.calendar_local import service as local
from web.auth import bearer_token, session_claims
from web.common import query_params, read_json
from web.errors import ApiError

MAX_FORM = 64 * 1024


def _redirect(resp: falcon.Response, url: str) -> None:
    resp.status = falcon.HTTP_302
    resp.location = url
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Referrer-Policy", "no-referrer")


class _Admin:
    auth = "admin"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx


class Start:
    """``GET /auth/<provider>/start``: a top-level navigation, authenticated by the
    session token in ``id_token`` (or the Authorization header)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _shop(self, req: falcon.Request) -> ShopRef:
        token = bearer_token(req) or (req.get_param("id_token") or "").strip()
        if not token:
            raise ApiError(falcon.HTTP_401, "unauthorized",
                           "a session token is required (id_token or Authorization: Bearer)")
        claims = session_claims(self.ctx, token)
        with self.ctx.db.lookup() as session:
            return installed_shop(session, claims.shop, admin=True)

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        shop = self._shop(req)
        url = connections.start_oauth(self.ctx.plugins, shop, item_id)
        if req.get_param("format") == "json":
            resp.media = {"authorize_url": url}
            resp.set_header("Cache-Control", "no-store")
            return
        _redirect(resp, url)


class Callback:
    """The provider's answer: a GET with the code in the query, or (``response_mode =
    form_post``, as Microsoft's is configured) a POST of a url-encoded form."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        self._finish(resp, item_id, query_params(req))

    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        raw = req.bounded_stream.read(MAX_FORM + 1)
        if len(raw) > MAX_FORM:
            raise ApiError(falcon.HTTP_413, "payload_too_large", "the form is too large")
        try:
            params = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise ApiError(falcon.HTTP_400, "invalid_form", "the form is not UTF-8") from None
        self._finish(resp, item_id, params)

    def _finish(self, resp: falcon.Response, item_id: str, params: dict[str, str]) -> None:
        plugins = self.ctx.plugins
        try:
            done = connections.finish_oauth(plugins, item_id, params)
        except connections.InvalidState as exc:
            raise ApiError(falcon.HTTP_400, exc.code, exc.message) from None
        except connections.OAuthDenied as exc:
            _redirect(resp, connections.admin_redirect(plugins, exc.shop, item_id, "error",
                                                       exc.message))
            return
        _redirect(resp, connections.admin_redirect(plugins, done.shop, item_id, "connected"))


class Connections(_Admin):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = connections.overview(self.ctx.plugins, req.context.shop)


class Connection(_Admin):
    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = {"authorize_url": connections.start_oauth(self.ctx.plugins,
                                                               req.context.shop, item_id)}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        connections.disconnect(self.ctx.plugins, req.context.shop, item_id)
        resp.status = falcon.HTTP_204


class BusyBlocks(_Admin):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"busy": local.list_blocks(self.ctx.plugins, req.context.shop.id,
                                                query_params(req))}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = local.add_block(self.ctx.plugins, req.context.shop.id, read_json(req))
        resp.status = falcon.HTTP_201


class BusyBlock(_Admin):
    def on_delete(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        local.delete_block(self.ctx.plugins, req.context.shop.id, item_id)
        resp.status = falcon.HTTP_204


class Feeds(_Admin):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"feeds": local.list_feeds(self.ctx.plugins, req.context.shop.id)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = local.add_feed(self.ctx.plugins, req.context.shop.id, read_json(req))
        resp.status = falcon.HTTP_201


class Feed(_Admin):
    def on_delete(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        local.delete_feed(self.ctx.plugins, req.context.shop.id, item_id)
        resp.status = falcon.HTTP_204


class FeedRefresh(_Admin):
    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = local.refresh_feed(self.ctx.plugins, req.context.shop.id, item_id)


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/auth/{item_id}/start", Start(ctx))
    app.add_route("/auth/{item_id}/callback", Callback(ctx))
    app.add_route("/admin/api/connections", Connections(ctx))
    app.add_route("/admin/api/connections/{item_id}", Connection(ctx))
    app.add_route("/admin/api/calendar/busy", BusyBlocks(ctx))
    app.add_route("/admin/api/calendar/busy/{item_id}", BusyBlock(ctx))
    app.add_route("/admin/api/calendar/feeds", Feeds(ctx))
    app.add_route("/admin/api/calendar/feeds/{item_id}", Feed(ctx))
    app.add_route("/admin/api/calendar/feeds/{item_id}/refresh", FeedRefresh(ctx))
