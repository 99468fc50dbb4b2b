"""Customers manage their own bookings through the App Proxy (the JSON API behind the
manage page), and the merchant's reschedule in the admin. The rules live in
engine.services.manage; these resources parse, call it, and render."""

from __future__ import annotations

import falcon

from engine.bootstrap import Context
from engine.errors import Unauthorized
from engine.services import manage
from web.common import query_params, read_json


class _Resource:
    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _kick(self) -> None:
        """Wake the outbox relay: a reschedule or cancel recorded work for it."""
        if self.ctx.after_commit is not None:
            self.ctx.after_commit()


class CustomerBooking(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, booking_id: str) -> None:
        token = query_params(req).get("token")
        resp.media = {"booking": manage.get_customer_booking(
            self.ctx.db, self.ctx.clock, req.context.shop, booking_id, token)}
        resp.cache_control = ["no-store"]


class CustomerReschedule(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, booking_id: str) -> None:
        request = manage.parse_reschedule(read_json(req))
        resp.media = {"booking": manage.reschedule(
            self.ctx.db, self.ctx.clock, req.context.shop, booking_id, request,
            self.ctx.busy_source)}
        resp.cache_control = ["no-store"]
        self._kick()


class CustomerCancel(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, booking_id: str) -> None:
        token = manage.parse_token_body(read_json(req))
        resp.media = {"booking": manage.customer_cancel(
            self.ctx.db, self.ctx.clock, req.context.shop, booking_id, token)}
        resp.cache_control = ["no-store"]
        self._kick()


class MyBookings(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # Only the signed value counts (a repeated one was refused by the middleware).
        customer = req.context.signed.get("logged_in_customer_id", "")
        if not customer.strip():
            raise Unauthorized("log in to see your bookings", code="login_required")
        resp.media = {"bookings": manage.my_bookings(self.ctx.db, self.ctx.clock,
                                                     self.ctx.config, req.context.shop,
                                                     customer)}
        resp.cache_control = ["no-store"]


class MerchantReschedule(_Resource):
    auth = "admin"

    def on_post(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        request = manage.parse_reschedule(read_json(req), merchant=True)
        resp.media = {"booking": manage.reschedule(
            self.ctx.db, self.ctx.clock, req.context.shop, item_id, request,
            self.ctx.busy_source, merchant=True)}
        self._kick()


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/proxy/bookings/{booking_id}", CustomerBooking(ctx))
    app.add_route("/proxy/bookings/{booking_id}/reschedule", CustomerReschedule(ctx))
    app.add_route("/proxy/bookings/{booking_id}/cancel", CustomerCancel(ctx))
    app.add_route("/proxy/my-bookings", MyBookings(ctx))
    app.add_route("/admin/api/bookings/{item_id}/reschedule", MerchantReschedule(ctx))
