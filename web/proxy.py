"""Storefront endpoints behind the Shopify App Proxy (``/apps/consult/*`` → ``/proxy/*``)."""

from __future__ import annotations

import falcon

from engine.bootstrap import Context
from engine.services import availability
from web.common import query_params


class Availability:
    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = availability.parse_query(query_params(req))
        resp.media = availability.availability(self.ctx.db, self.ctx.clock, req.context.shop,
                                               query, self.ctx.busy_source)
        resp.cache_control = ["no-store"]


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/proxy/availability", Availability(ctx))
