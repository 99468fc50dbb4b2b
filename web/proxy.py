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
        # The JSON body from the per-process answer cache (never stale: see
        # engine.services.availability.availability_json).
        resp.data = availability.availability_json(self.ctx.db, self.ctx.clock,
                                                   req.context.shop, query,
                                                   self.ctx.busy_source)
        resp.content_type = falcon.MEDIA_JSON
        resp.cache_control = ["no-store"]


def visitor_of(req: falcon.Request, trusted_hops: int) -> str:
    """Who is holding, for the per-visitor hold limit.

    1. The signed ``logged_in_customer_id`` (the signature covers it, and a request that
       repeats it was refused by the auth middleware).
    2. Else the client address from ``X-Forwarded-For``: the entry ``trusted_hops``
       places from the right. Each trusted proxy appends the address it saw, so the
       entries to the right of that one were written by our proxies and the rest (to
       its left) by whoever sent the request: a client that adds or varies entries on
       the left changes nothing. Several ``X-Forwarded-For`` headers count as one list
       in order (RFC 7230 section 3.2.2). With fewer entries than hops, or an entry
       that is not an IP address, the header is not trusted at all.
    3. Else the connecting address.
    """
    customer = req.context.signed.get("logged_in_customer_id", "").strip()
    if customer:
        return f"customer:{customer[:100]}"
    if trusted_hops > 0:
        forwarded = forwarded_for(req)
        if len(forwarded) >= trusted_hops:
            try:
                return f"ip:{ipaddress.ip_address(forwarded[-trusted_hops])}"
            except ValueError:
                pass
    return f"ip:{req.remote_addr or 'unknown'}"


def forwarded_for(req: falcon.Request) -> list[str]:
    """The ``X-Forwarded-For`` entries, left to right, across every such header line."""
    lines = req.get_header("X-Forwarded-For", default="")
    # The WSGI server hands repeated header lines over joined by ",", in order.
    return [entry.strip() for entry in (lines or "").split(",") if entry.strip()]


class Holds:
    auth = "proxy"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = holds.parse_hold(read_json(req))
        resp.media = holds.create_hold(self.ctx.db, self.ctx.clock, self.ctx.config,
                                       req.context.shop, request,
                                       visitor_of(req, self.ctx.config.trusted_proxy_hops),
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
