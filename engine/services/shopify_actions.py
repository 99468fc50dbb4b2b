"""What consultbook tells Shopify about orders, through the outbox (never inside the
webhook request): tag a booked order, and — when the merchant turned auto-refund on —
refund what the refund log says was not honoured (``refundCreate`` with an idempotency
key derived from the order, the line and the entry's kind, so a retried task never
refunds twice).

A refund through Shopify is only ever attempted for a **paid** order:

* an entry written while its order is unpaid (``pending``) waits as
  ``awaiting_payment``; when the order becomes paid, the waiting entries are queued then,
  once (a conditional update under the order's lock, :func:`settle_waiting_refunds`);
* an order that is cancelled gets no refund queued by us: Shopify's cancellation is
  where the merchant returns the money (refunding there too would refund twice, or fail
  for an uncaptured payment). Waiting entries become ``skipped``, and a queued refund
  whose order was cancelled before it ran is skipped too (:func:`refund_line`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
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
from engine.store.models import REFUND_LINE, Claim, Order, OutboxItem, Refund, Shop, ShopSettings

TAG_KIND = "order.tag"
REFUND_KIND = "order.refund"
TAGS = ("consultbook",)
AWAITING_PAYMENT, QUEUED, REFUNDED, FAILED, SKIPPED = (
    "awaiting_payment", "pending", "refunded", "failed", "skipped")


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


def _auto_refund(session: Session, shop: Shop) -> bool:
    settings = session.get(ShopSettings, shop.id)
    return bool(settings is not None and settings.auto_refund and shop.access_token)


def _queue(session: Session, shop: Shop, refund: Refund, now: datetime) -> None:
    refund.shopify_status = QUEUED
    session.add(OutboxItem(shop_id=shop.id, booking_id=None, kind=REFUND_KIND,
                           payload={"refund_id": refund.id}, status="pending",
                           attempts=0, available_at=now, created_at=now))


def record_refund(session: Session, shop: Shop, refund: Refund, order_state: str,
                  now: datetime) -> None:
    """With auto-refund on, queue the Shopify refund of a new refund-log entry -- at once
    for a paid order, once it is paid for an unpaid one, never for a cancelled one."""
    if not _auto_refund(session, shop):
        return
    if order_state == "paid":
        _queue(session, shop, refund, now)
    elif order_state == "cancelled":
        refund.shopify_status = SKIPPED
    else:
        refund.shopify_status = AWAITING_PAYMENT


def settle_waiting_refunds(session: Session, shop: Shop, order: Order, now: datetime) -> int:
    """Entries of this order waiting for its payment: queued once it is paid (if
    auto-refund is still on; else left to the merchant), skipped once it is cancelled.
    Each moves out of ``awaiting_payment`` exactly once: the caller holds the order's
    lock, and a redelivery finds nothing waiting. Returns how many were queued."""
    if order.state not in ("paid", "cancelled"):
        return 0
    waiting = list(session.scalars(select(Refund).where(
        Refund.shop_id == shop.id, Refund.order_id == order.order_id,
        Refund.shopify_status == AWAITING_PAYMENT).order_by(Refund.created_at, Refund.id)))
    queued = 0
    for refund in waiting:
        if order.state == "cancelled":
            refund.shopify_status = SKIPPED
        elif _auto_refund(session, shop):
            _queue(session, shop, refund, now)
            queued += 1
        else:
            refund.shopify_status = None
    session.flush()
    return queued


NOTES = {
    "": "consultbook could not honour this appointment",
    "extra_quantity": "consultbook: units beyond the appointment's seats",
    "merchant_cancelled": "consultbook: the appointment was cancelled by the shop",
    "customer_cancelled": "consultbook: the appointment was cancelled by the customer",
}


def idempotency_key(refund: Refund) -> str:
    """Shopify's idempotency key for an entry's refund: one per order, line and kind (a
    line can have a ``line``, an ``extra`` and a ``cancel`` entry, each its own refund;
    ``line`` entries keep the key they had before entries had kinds)."""
    base = f"consultbook-refund-{refund.order_id}-{refund.line_item_id}"
    return base if refund.kind == REFUND_LINE else f"{base}-{refund.kind}"


def _client(job: Any) -> Any:
    from engine.services.install import admin_client

    plugins = job.plugins
    ctx = _Ctx(plugins.config, job.db, job.clock, plugins.keyring)
    try:
        return admin_client(ctx, job.item.shop_id)
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
        if refund is None or refund.shopify_status in (REFUNDED, SKIPPED):
            return
        order_state = session.scalar(select(Order.state).where(
            Order.shop_id == refund.shop_id, Order.order_id == refund.order_id))
        order_id, line_id = refund.order_id, refund.line_item_id
        quantity, currency = refund.quantity or 1, refund.currency or ""
        key = idempotency_key(refund)
        note = NOTES.get(refund.reason, NOTES[""])
    if order_state == "cancelled":
        # Cancelled after the refund was queued: Shopify's cancellation settles the money.
        _mark(job.db, refund_id, SKIPPED)
        return
    try:
        with _client(job) as api:
            result = api.refund_line_items(
                order_id, [{"line_item_id": line_id, "quantity": quantity}], currency,
                idempotency_key=key,
                note=note)
    except ConsultbookError as exc:
        error = _as_provider_error(exc)
        if isinstance(error, ProviderRejected):
            _mark(job.db, refund_id, FAILED, error=exc.message)
        raise error from None
    _mark(job.db, refund_id, REFUNDED, shopify_id=str(result.get("refund_id") or ""))


def _mark(db: Database, refund_id: str, status: str, *, shopify_id: str | None = None,
          error: str | None = None) -> None:
    with db.write() as session:
        session.execute(update(Refund).where(Refund.id == refund_id).values(
            shopify_status=status, shopify_refund_id=shopify_id, shopify_error=error))
