"""``POST /webhooks``: Shopify's deliveries. HMAC over the raw body first (401, nothing
stored), then the engine dedups and applies the delivery in one transaction. Anything
valid answers 200 quickly — external work is only recorded for the worker."""

from __future__ import annotations

import json

import falcon

from engine.bootstrap import Context
from engine.services import webhooks
from engine.services.orders import parse_time
from engine.shopify import SignatureError, verify_webhook
from web.errors import ApiError

MAX_BODY = 5 << 20  # Shopify order payloads are far smaller


class Webhooks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.content_length is not None and req.content_length > MAX_BODY:
            raise ApiError(falcon.HTTP_413, "payload_too_large", "the webhook body is too large")
        raw = req.bounded_stream.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise ApiError(falcon.HTTP_413, "payload_too_large", "the webhook body is too large")
        try:
            verify_webhook(raw, req.get_header("X-Shopify-Hmac-Sha256"),
                           self.ctx.config.api_secret)
        except SignatureError as exc:
            raise ApiError(falcon.HTTP_401, "invalid_signature", str(exc)) from None
        topic = (req.get_header("X-Shopify-Topic") or "").strip()
        shop = (req.get_header("X-Shopify-Shop-Domain") or "").strip().lower()
        if not topic or not shop:
            raise ApiError(falcon.HTTP_400, "invalid_request",
                           "X-Shopify-Topic and X-Shopify-Shop-Domain are required")
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(falcon.HTTP_400, "invalid_json",
                           "the webhook body is not valid UTF-8 JSON") from None
        delivery = webhooks.Delivery(
            topic=topic, shop_domain=shop,
            webhook_id=(req.get_header("X-Shopify-Webhook-Id") or "").strip() or None,
            triggered_at=parse_time(req.get_header("X-Shopify-Triggered-At")),
            payload=payload)
        outcome = webhooks.handle(self.ctx.db, self.ctx.clock, delivery,
                                  outbox_dir=self.ctx.config.outbox_dir)
        resp.media = {"status": outcome.status}
        if outcome.status == "processed" and self.ctx.after_commit is not None:
            self.ctx.after_commit()


def register(app: falcon.App, ctx: Context) -> None:
    app.add_route("/webhooks", Webhooks(ctx))
