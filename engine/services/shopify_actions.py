"""What consultbook tells Shopify about orders, through the outbox (never inside the
webhook request): tag a booked order, and — when the merchant turned auto-refund on —
refund a line item that could not be honoured (``refundCreate`` with an idempotency key
derived from the order and line, so a retried task never refunds twice)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.config import Config
from engine.crypto import Keyring
from engine.errors import ConsultbookError
from engine.providers.errors import (
    ConnectionBroken,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from engine.store import Database
from engine.store.models import Claim, OutboxItem, Refund, Shop, ShopSettings

TAG_KIND = "order.tag"
REFUND_KIND = "order.refund"
TAGS = ("consultbook",)


@dataclass
class _Ctx:
    """The part of engine.bootstrap.Context that engine.services.install uses."""

    config: Config
    db: Database
    clock: Clock
    keyring: Keyring


def record_tag(session: Session, shop: Shop, claim: Claim, now: datetime) -> None:
    """Queue tagging the booked order (only for shops with a Shopify token)."""
    if not shop.access_token or not claim.order_id:
        return
    session.add(OutboxItem(shop_id=shop.id, booking_id=claim.id, kind=TAG_KIND,
                           payload={"order_id": claim.order_id}, status="pending",
                           attempts=0, available_at=now, created_at=now))


def record_refund(session: Session, shop: Shop, refund: Refund, now: datetime) -> None:
    """Queue the Shopify refund of a logged line item, if the merchant wants that."""
    settings = session.get(ShopSettings, shop.id)
    if settings is None or not settings.auto_refund or not shop.access_token:
        return
    refund.shopify_status = "pending"
    session.add(OutboxItem(shop_id=shop.id, booking_id=None, kind=REFUND_KIND,
                           payload={"refund_id": refund.id}, status="pending",
                           attempts=0, available_at=now, created_at=now))


def _client(job: Any) -> Any:
    from engine.services.install import admin_client

    plugins = job.plugins
    ctx = _Ctx(plugins.config, job.db, job.clock, plugins.keyring)
    try:
        return admin_client(ctx, job.item.shop_id)  # type: ignore[arg-type]
    except ConsultbookError as exc:
        raise _as_provider_error(exc) from None


def _as_provider_error(exc: ConsultbookError) -> ConsultbookError:
    """Shopify's failures in the outbox's terms: retry, reconnect, or give up."""
    from engine.services.install import ShopifyReauthRequired
    from engine.shopify.oauth import ShopifyUnavailable

    if isinstance(exc, ProviderError):  # already in the outbox's terms (from _client)
        return exc
    if isinstance(exc, ShopifyUnavailable):
        return ProviderUnavailable(exc.message, provider="shopify")
    if isinstance(exc, ShopifyReauthRequired):
        return ConnectionBroken(exc.message, provider="shopify")
    return ProviderRejected(exc.message, provider="shopify")


def tag_order(job: Any) -> None:
    order_id = (job.item.payload or {}).get("order_id")
    if not order_id:
        return
    try:
        with _client(job) as api:
            api.tag_order(order_id, [*TAGS, f"consultbook-{job.item.booking_id}"])
    except ConsultbookError as exc:
        raise _as_provider_error(exc) from None


def refund_line(job: Any) -> None:
    refund_id = str((job.item.payload or {}).get("refund_id") or "")
    with job.db.read() as session:
        refund = session.get(Refund, refund_id)
        if refund is None or refund.shopify_status == "refunded":
            return
        order_id, line_id = refund.order_id, refund.line_item_id
        quantity, currency = refund.quantity or 1, refund.currency or ""
    try:
        with _client(job) as api:
            result = api.refund_line_items(
                order_id, [{"line_item_id": line_id, "quantity": quantity}], currency,
                idempotency_key=f"consultbook-refund-{order_id}-{line_id}",
                note="consultbook could not honour this appointment")
    except ConsultbookError as exc:
        error = _as_provider_error(exc)
        if isinstance(error, ProviderRejected):
            _mark(job.db, refund_id, "failed", error=exc.message)
        raise error from None
    _mark(job.db, refund_id, "refunded", shopify_id=str(result.get("refund_id") or ""))


def _mark(db: Database, refund_id: str, status: str, *, shopify_id: str | None = None,
          error: str | None = None) -> None:
    with db.write() as session:
        session.execute(update(Refund).where(Refund.id == refund_id).values(
            shopify_status=status, shopify_refund_id=shopify_id, shopify_error=error))
