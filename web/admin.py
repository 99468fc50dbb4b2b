"""The embedded admin's JSON API (``/admin/api/*``), authorized by App Bridge session tokens."""

from __future__ import annotations

import falcon

from engine.bootstrap import Context
from engine.errors import ValidationError
from engine.services import bookings, catalog, export, privacy, schedules, shops
from web.common import query_params, read_json


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
    def _providers(self) -> dict[str, list[str]] | None:
        plugins = getattr(self.ctx, "plugins", None)
        if plugins is None:
            return None
        return {k: plugins.registry.names(k) for k in ("calendar", "video", "mail")}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shops.get_settings(self.ctx.db, req.context.shop.id)

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shops.update_settings(self.ctx.db, req.context.shop.id, read_json(req),
                                           "replace", self._providers())

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shops.update_settings(self.ctx.db, req.context.shop.id, read_json(req),
                                           "update", self._providers())


class Bookings(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        lo, hi = bookings.parse_range(query_params(req))
        resp.media = {"bookings": bookings.list_bookings(self.ctx.db, req.context.shop.id,
                                                         lo, hi)}


class Booking(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = bookings.get_booking(self.ctx.db, req.context.shop.id, item_id)


class BookingCancel(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = bookings.merchant_cancel(self.ctx.db, self.ctx.clock,
                                              req.context.shop.id, item_id)
        if self.ctx.after_commit is not None:
            self.ctx.after_commit()


class Refunds(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"refunds": bookings.list_refunds(self.ctx.db, req.context.shop.id)}


class Export(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query_params(req)
        fmt = params.get("format", "csv")
        lo, hi = bookings.parse_range(params)
        shop = req.context.shop
        stem = f"bookings-{shop.domain.split('.')[0]}"
        if fmt == "csv":
            resp.content_type = "text/csv; charset=utf-8"
            resp.text = export.export_csv(self.ctx.db, shop.id, lo, hi)
            resp.downloadable_as = f"{stem}.csv"
        elif fmt == "ics":
            resp.content_type = "text/calendar; charset=utf-8"
            resp.data = export.export_ics(self.ctx.db, shop.id, lo, hi)
            resp.downloadable_as = f"{stem}.ics"
        else:
            raise ValidationError("format must be csv or ics", field="format")
        resp.cache_control = ["no-store"]


class PrivacyRequests(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"requests": privacy.list_requests(self.ctx.db, req.context.shop.id)}


class PrivacyExport(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = privacy.export_request(self.ctx.db, req.context.shop.id, item_id)


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/admin/api/services", Services(ctx))
    app.add_route("/admin/api/services/{item_id}", Service(ctx))
    app.add_route("/admin/api/experts", Experts(ctx))
    app.add_route("/admin/api/experts/{item_id}", Expert(ctx))
    app.add_route("/admin/api/experts/{item_id}/schedule", Schedule(ctx))
    app.add_route("/admin/api/settings", Settings(ctx))
    app.add_route("/admin/api/bookings", Bookings(ctx))
    app.add_route("/admin/api/bookings/{item_id}", Booking(ctx))
    app.add_route("/admin/api/bookings/{item_id}/cancel", BookingCancel(ctx))
    app.add_route("/admin/api/refunds", Refunds(ctx))
    app.add_route("/admin/api/export", Export(ctx))
    app.add_route("/admin/api/privacy-requests", PrivacyRequests(ctx))
    app.add_route("/admin/api/privacy-requests/{item_id}/export", PrivacyExport(ctx))
