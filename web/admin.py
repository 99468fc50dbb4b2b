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


#: The settings fields that name a provider, and the registry kind each one draws from.
PROVIDER_FIELDS = {"calendar_provider": "calendar", "video_provider": "video",
                   "mail_provider": "mail"}


class Settings(_Resource):
    """``GET|PUT|PATCH /admin/api/settings``.

    GET adds one read-only field to the settings document, ``choices``: for each provider
    field, every provider registered in this process (built-in or plugin), as
    ``{"name", "label"}`` sorted by label, so that the admin page offers each by its
    label -- ``{"calendar_provider": [{"name": "google", "label": "Google Calendar"},
    ...], "video_provider": [...], "mail_provider": [...]}``. PUT and PATCH answer the
    settings document without it, and ignore a ``choices`` sent back (a GET-edit-PUT
    round trip works); any other unknown field is still refused.
    """

    def _providers(self) -> dict[str, list[str]] | None:
        plugins = getattr(self.ctx, "plugins", None)
        if plugins is None:
            return None
        return {k: plugins.registry.names(k) for k in ("calendar", "video", "mail")}

    def _choices(self) -> dict[str, list[dict[str, str]]]:
        registry = self.ctx.plugins.registry
        choices: dict[str, list[dict[str, str]]] = {}
        for field, kind in PROVIDER_FIELDS.items():
            options = []
            for name in registry.names(kind):
                cls = registry.get(kind, name)
                # A provider declares its label as a class attribute (engine.providers.
                # base.Provider.label); one that leaves it empty is shown by its name.
                label = getattr(cls, "label", "") or name
                options.append({"name": name, "label": str(label)})
            choices[field] = sorted(options, key=lambda o: (o["label"].casefold(), o["name"]))
        return choices

    @staticmethod
    def _document(req: falcon.Request) -> object:
        doc = read_json(req)
        if isinstance(doc, dict) and "choices" in doc:
            # Read-only, from GET: not a setting (unknown fields are still refused).
            doc = {k: v for k, v in doc.items() if k != "choices"}
        return doc

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        doc = shops.get_settings(self.ctx.db, req.context.shop.id)
        resp.media = {**doc, "choices": self._choices()}

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shops.update_settings(self.ctx.db, req.context.shop.id,
                                           self._document(req), "replace", self._providers())

    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shops.update_settings(self.ctx.db, req.context.shop.id,
                                           self._document(req), "update", self._providers())


class Bookings(_Resource):
    """``GET /admin/api/bookings?from&to[&expert][&service][&status][&q]`` (the filters
    are engine.services.bookings.parse_filter's)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = query_params(req)
        lo, hi = bookings.parse_range(params)
        filters = bookings.parse_filter(params)
        resp.media = {"bookings": bookings.list_bookings(self.ctx.db, req.context.shop.id,
                                                         lo, hi, filters)}


class Booking(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = bookings.get_booking(self.ctx.db, req.context.shop.id, item_id)


class BookingCancel(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = bookings.merchant_cancel(self.ctx.db, self.ctx.clock,
                                              req.context.shop.id, item_id)
        if self.ctx.after_commit is not None:
            self.ctx.after_commit()


class BookingNoShow(_Resource):
    """``POST /admin/api/bookings/ID/no_show {"no_show": true|false}`` -> ``{"booking"}``."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        no_show = bookings.parse_no_show(read_json(req))
        resp.media = {"booking": bookings.mark_no_show(self.ctx.db, self.ctx.clock,
                                                       req.context.shop.id, item_id, no_show)}


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
    app.add_route("/admin/api/bookings/{item_id}/no_show", BookingNoShow(ctx))
    app.add_route("/admin/api/refunds", Refunds(ctx))
    app.add_route("/admin/api/export", Export(ctx))
    app.add_route("/admin/api/privacy-requests", PrivacyRequests(ctx))
    app.add_route("/admin/api/privacy-requests/{item_id}/export", PrivacyExport(ctx))
