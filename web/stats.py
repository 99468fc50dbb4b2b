"""``GET /admin/api/stats``: the numbers of the admin's home page (engine.services.stats)."""

from __future__ import annotations

import falcon

from engine.bootstrap import Context
from engine.services import stats
from web.common import query_params


class Stats:
    auth = "admin"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = stats.home_stats(self.ctx.db, self.ctx.clock, req.context.shop.id,
                                      query_params(req))
        resp.cache_control = ["no-store"]


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/admin/api/stats", Stats(ctx))
