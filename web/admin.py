"""The embedded admin's JSON API (``/admin/api/*``), authorized by App Bridge session tokens."""

from __future__ import annotations

import falcon

from engine.bootstrap import Context
from engine.services import catalog, schedules, shops
from web.common import read_json


class _Resource:
    auth = "admin"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx


class Services(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"services": catalog.list_services(self.ctx.db, req.context.shop.id)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = catalog.create_service(self.ctx.db, self.ctx.clock, req.context.shop.id,
                                            read_json(req))
        resp.status = falcon.HTTP_201
        resp.location = f"/admin/api/services/{resp.media['id']}"


class Service(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = catalog.get_service(self.ctx.db, req.context.shop.id, item_id)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = catalog.update_service(self.ctx.db, req.context.shop.id, item_id,
                                            read_json(req), "update")

    def on_put(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = catalog.update_service(self.ctx.db, req.context.shop.id, item_id,
                                            read_json(req), "replace")

    def on_delete(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        catalog.delete_service(self.ctx.db, self.ctx.clock, req.context.shop.id, item_id)
        resp.status = falcon.HTTP_204


class Experts(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"experts": catalog.list_experts(self.ctx.db, req.context.shop.id)}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = catalog.create_expert(self.ctx.db, self.ctx.clock, req.context.shop.id,
                                           read_json(req))
        resp.status = falcon.HTTP_201
        resp.location = f"/admin/api/experts/{resp.media['id']}"


class Expert(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = catalog.get_expert(self.ctx.db, req.context.shop.id, item_id)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = catalog.update_expert(self.ctx.db, req.context.shop.id, item_id,
                                           read_json(req), "update")

    def on_put(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = catalog.update_expert(self.ctx.db, req.context.shop.id, item_id,
                                           read_json(req), "replace")

    def on_delete(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        catalog.delete_expert(self.ctx.db, self.ctx.clock, req.context.shop.id, item_id)
        resp.status = falcon.HTTP_204


class Schedule(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = schedules.get_schedule(self.ctx.db, req.context.shop.id, item_id)

    def on_put(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = schedules.put_schedule(self.ctx.db, req.context.shop.id, item_id,
                                            read_json(req))


class Settings(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shops.get_settings(self.ctx.db, req.context.shop.id)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shops.update_settings(self.ctx.db, req.context.shop.id, read_json(req),
                                           "replace")

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shops.update_settings(self.ctx.db, req.context.shop.id, read_json(req),
                                           "update")


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/admin/api/services", Services(ctx))
    app.add_route("/admin/api/services/{item_id}", Service(ctx))
    app.add_route("/admin/api/experts", Experts(ctx))
    app.add_route("/admin/api/experts/{item_id}", Expert(ctx))
    app.add_route("/admin/api/experts/{item_id}/schedule", Schedule(ctx))
    app.add_route("/admin/api/settings", Settings(ctx))
