"""``GET /admin/api/checklist``: the admin's first-run checklist (engine.services.checklist).

The theme step asks Shopify's Admin API; its answer is kept per shop in this process for a
minute (one :class:`~engine.services.checklist.ThemeCache` per app), so the home page can
ask on every load.
"""

from __future__ import annotations

import falcon

from engine.bootstrap import Context
from engine.services import checklist


class Checklist:
    auth = "admin"

    def __init__(self, ctx: Context, cache: checklist.ThemeCache) -> None:
        self.ctx, self.cache = ctx, cache

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = checklist.checklist(self.ctx, req.context.shop.id, self.cache)
        resp.cache_control = ["no-store"]


def register(app: falcon.App, ctx: Context) -> checklist.ThemeCache:
    """Mount the route; returns the theme cache it uses."""
    cache = checklist.ThemeCache()
    app.add_route("/admin/api/checklist", Checklist(ctx, cache))
    return cache
