"""Storefront endpoints behind the Shopify App Proxy (``/apps/consult/*`` → ``/proxy/*``)."""

from __future__ import annotations

import ipaddress

import falcon

from engine.bootstrap import Context
from engine.services import availability, holds
from web.common import query_params, read_json


class Availability:
    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        query = availability.parse_query(query_params(req))
        resp.media = availability.availability(self.ctx.db, self.ctx.clock, req.context.shop,
                                               query, self.ctx.busy_source)
        resp.cache_control = ["no-store"]


def visitor_of(req: falcon.Request) -> str:
    """Who is holding: the signed logged-in customer, else the client address Shopify
    forwards (the first ``X-Forwarded-For`` entry), else the connecting address."""
    customer = req.context.signed.get("logged_in_customer_id", "").strip()
    if customer:
        return f"customer:{customer[:100]}"
    forwarded = (req.get_header("X-Forwarded-For") or "").split(",")[0].strip()
    try:
        return f"ip:{ipaddress.ip_address(forwarded)}"
    except ValueError:
        return f"ip:{req.remote_addr or 'unknown'}"


class Holds:
    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = holds.parse_hold(read_json(req))
        resp.media = holds.create_hold(self.ctx.db, self.ctx.clock, self.ctx.config,
                                       req.context.shop, request, visitor_of(req),
                                       self.ctx.busy_source)
        resp.status = falcon.HTTP_201
        resp.cache_control = ["no-store"]


class Hold:
    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_delete(self, req: falcon.Request, resp: falcon.Response, hold_id: str) -> None:
        holds.release_hold(self.ctx.db, self.ctx.clock, req.context.shop, hold_id)
        resp.status = falcon.HTTP_204


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/proxy/availability", Availability(ctx))
    app.add_route("/proxy/holds", Holds(ctx))
    app.add_route("/proxy/holds/{hold_id}", Hold(ctx))
