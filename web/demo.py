"""Demo-only helpers (mounted only under `consultbook demo`): fresh signed proxy URLs."""

from __future__ import annotations

import falcon

from engine.bootstrap import Context
from engine.demo import sample_availability_url, seed


class DemoAvailability:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPFound(sample_availability_url(self.ctx, seed(self.ctx)))


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/demo/availability", DemoAvailability(ctx))
