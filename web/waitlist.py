"""``POST /proxy/waitlist``: wait for a free time of a service on a date (the storefront,
through the App Proxy). The scan that mails the entry is engine.services.waitlist."""

from __future__ import annotations

import falcon

from engine.bootstrap import Context
from engine.services import waitlist
from web.common import read_json
from web.proxy import visitor_of


class Waitlist:
    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = waitlist.parse_join(read_json(req))
        resp.media = waitlist.join(self.ctx.db, self.ctx.clock, req.context.shop, request,
                                   visitor_of(req, self.ctx.config.trusted_proxy_hops))
        resp.status = falcon.HTTP_201
        resp.cache_control = ["no-store"]


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/proxy/waitlist", Waitlist(ctx))
