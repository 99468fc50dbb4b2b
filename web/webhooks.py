"""``POST /webhooks``: Shopify's deliveries. HMAC over the raw body first (401, nothing
stored), then the engine dedups and applies the delivery in one transaction. Anything
valid answers 200 quickly — external work is only recorded for the worker.

A delivery with a valid HMAC is never refused for what it contains (the contract: no
payload makes it answer 5xx, and its well-formed lines are still decided): the body
and the headers go through ``web.guard`` 's sanitizer before anything reads them.
"""

from __future__ import annotations

from datetime import datetime

import falcon

from engine.bootstrap import Context
from engine.services import webhooks
from engine.services.orders import parse_time
from engine.shopify import SignatureError, verify_webhook
from web.errors import ApiError
from web.guard import MAX_WEBHOOK_BODY, clean_header, parse_webhook_json, read_body

MAX_BODY = MAX_WEBHOOK_BODY  # 10 MiB (contract)


class Webhooks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        raw = read_body(req, MAX_BODY)
        try:
            verify_webhook(raw, req.get_header("X-Shopify-Hmac-Sha256"),
                           self.ctx.config.api_secret)
        except SignatureError as exc:
            raise ApiError(falcon.HTTP_401, "invalid_signature", str(exc)) from None
        # Header values are cleaned (controls stripped, lone surrogates replaced) and
        # bounded by the columns they end up in; empty or whitespace counts as missing.
        topic = clean_header(req.get_header("X-Shopify-Topic"), 64)
        shop = clean_header(req.get_header("X-Shopify-Shop-Domain"), 255)
        if not topic or not shop:
            raise ApiError(falcon.HTTP_400, "invalid_request",
                           "X-Shopify-Topic and X-Shopify-Shop-Domain are required")
        webhook_id = clean_header(req.get_header("X-Shopify-Webhook-Id"), 128)
        # A redelivery (Shopify retries, at least once) is answered after one indexed
        # lookup, before the body is parsed or a transaction begins.
        if webhooks.seen(self.ctx.db, topic, webhook_id):
            resp.media = {"status": "duplicate"}
            return
        payload = parse_webhook_json(raw)
        delivery = webhooks.Delivery(
            topic=topic, shop_domain=shop.lower(), webhook_id=webhook_id,
            triggered_at=_triggered_at(req.get_header("X-Shopify-Triggered-At")),
            payload=payload)
        outcome = webhooks.handle(self.ctx.db, self.ctx.clock, delivery,
                                  outbox_dir=self.ctx.config.outbox_dir)
        resp.media = {"status": outcome.status}
        if outcome.status == "processed" and self.ctx.after_commit is not None:
            self.ctx.after_commit()


def _triggered_at(value: str | None) -> datetime | None:
    """The advisory delivery time; anything unusable (even a date that overflows when
    moved to UTC) is None, never a reason to refuse a delivery."""
    try:
        return parse_time(clean_header(value, 64))
    except (ValueError, OverflowError):
        return None


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/webhooks", Webhooks(ctx))
