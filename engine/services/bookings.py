"""The merchant's bookings: list, cancel, and the refund log."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.errors import NotFound, ValidationError
from engine.services.holds import parse_instant
from engine.services.orders import (
    MERCHANT_CANCELLED,
    amount_text,
    cancel_booking,
    lock_order,
    refund_cancelled_booking,
)
from engine.services.outbox import delivery_status, delivery_statuses
from engine.store import Database
from engine.store.models import (
    BOOKING_STATUSES,
    CANCELLED,
    CONFIRMED,
    REFUND_CANCEL,
    Claim,
    Expert,
    Refund,
    Service,
    Shop,
)

ISO = "%Y-%m-%dT%H:%M:%SZ"


def parse_range(params: dict[str, str]) -> tuple[datetime | None, datetime | None]:
    """``from``/``to`` query parameters: instants, both optional, ``from < to``."""
    lo = parse_instant("from", params["from"]) if params.get("from") else None
    hi = parse_instant("to", params["to"]) if params.get("to") else None
    if lo is not None and hi is not None and lo >= hi:
        raise ValidationError("from must be before to", field="from")
    return lo, hi


_UNSET: Any = object()


def render_booking(session: Session, c: Claim, delivery: Any = _UNSET) -> dict[str, Any]:
    """A booking as the admin API shows it; ``delivery`` may be passed in when the
    caller fetched it in bulk (:func:`list_bookings`)."""
    service = session.get(Service, c.service_id)
    expert = session.get(Expert, c.expert_id)
    return {
        "id": c.id,
        "service": c.service_id,
        "service_title": service.title if service else None,
        "expert": c.expert_id,
        "expert_name": expert.name if expert else None,
        "start": c.start_at.strftime(ISO),
        "end": c.end_at.strftime(ISO),
        "status": c.status,
        "order_id": c.order_id,
        "line_item_id": c.line_item_id,
        "customer": {"name": c.customer_name, "email": c.customer_email},
        "customer_timezone": c.customer_tz,
        # The intake answers kept from the hold, {question id: text} ({} when none or
        # erased by customers/redact); labels come from the service's questions.
        "answers": dict(c.answers or {}),
        "cancelled_by": c.cancelled_by if c.status == CANCELLED else None,
        "reschedules": int(c.reschedules or 0),
        # The seats this booking took (its line's units, at most the hold's seats).
        "seats": c.line_quantity or 1,
        # What its line paid for those seats (None for a booking older than the price
        # record), in the order's currency: what a merchant's cancel would refund.
        "amount": (amount_text(Decimal(c.line_price), c.line_quantity or 1)
                   if c.line_price is not None else None),
        "currency": c.currency,
        "meeting_url": c.meeting_url,
        # What happened to the calendar event and the messages (engine/services/outbox.py).
        "delivery": delivery_status(session, c.id) if delivery is _UNSET else delivery,
    }


def booking_rows(session: Session, shop_id: str, lo: datetime | None,
                 hi: datetime | None) -> list[Claim]:
    q = (select(Claim).where(Claim.shop_id == shop_id, Claim.status.in_(BOOKING_STATUSES),
                             Claim.order_id.is_not(None))
         .order_by(Claim.start_at, Claim.id))
    if lo is not None:
        q = q.where(Claim.start_at >= lo)
    if hi is not None:
        q = q.where(Claim.start_at < hi)
    return list(session.scalars(q))


def list_bookings(db: Database, shop_id: str, lo: datetime | None,
                  hi: datetime | None) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = booking_rows(session, shop_id, lo, hi)
        deliveries = delivery_statuses(session, [c.id for c in rows])
        return [render_booking(session, c, deliveries[c.id]) for c in rows]


def _booking(session: Session, shop_id: str, booking_id: str) -> Claim:
    c = session.get(Claim, booking_id)
    if c is None or c.shop_id != shop_id or c.order_id is None \
            or c.status not in BOOKING_STATUSES:
        raise NotFound(f"no booking {booking_id!r}")
    return c


def get_booking(db: Database, shop_id: str, booking_id: str) -> dict[str, Any]:
    with db.read() as session:
        return render_booking(session, _booking(session, shop_id, booking_id))


# What the cancel endpoint says about the money: Shopify refund states as the merchant
# reads them (engine.services.shopify_actions).
_SHOPIFY_WORDS = {None: "off", "pending": "queued", "awaiting_payment": "queued",
                  "refunded": "refunded", "failed": "failed", "skipped": "skipped"}


def render_refund_outcome(refund: Refund | None) -> dict[str, Any] | None:
    """``{"reason", "amount", "currency", "shopify"}`` for a cancel's refund entry, where
    ``shopify`` is ``queued`` (auto-refund on: Shopify will be asked), ``off`` (only
    logged: the merchant refunds by hand), or what became of it later (``refunded``,
    ``failed``, ``skipped``); None: no money to return (an unpaid booking)."""
    if refund is None:
        return None
    return {"reason": refund.reason, "amount": refund.amount, "currency": refund.currency,
            "shopify": _SHOPIFY_WORDS.get(refund.shopify_status, refund.shopify_status)}


def merchant_cancel(db: Database, clock: Clock, shop_id: str, booking_id: str
                    ) -> dict[str, Any]:
    """Cancel a booking from the admin: frees the slot, cancels the event, mails the
    customer (through the outbox). A confirmed (paid) booking gets one refund entry
    ``merchant_cancelled`` (what its line paid for the units it booked), refunded through
    Shopify too when auto-refund is on; a pending one gets none (nothing was paid -- if the
    order is paid later, the entry is written then: engine.services.orders).

    Cancelling twice is fine: nothing more is written, and the answer is the same. The
    booking comes back with ``"refund": {...} | null`` (:func:`render_refund_outcome`)."""
    now = clock.now()
    with db.write() as session:
        c = session.get(Claim, booking_id)
        if c is None or c.shop_id != shop_id or c.order_id is None \
                or c.status not in BOOKING_STATUSES:
            raise NotFound(f"no booking {booking_id!r}")
        refund = cancel_with_refund(session, c, "merchant", MERCHANT_CANCELLED, now)
        out = render_booking(session, c)
        out["refund"] = render_refund_outcome(refund)
        return out


def cancel_with_refund(session: Session, c: Claim, by: str, reason: str, now: datetime
                       ) -> Refund | None:
    """Cancel a booking (``by`` merchant | customer) and, if it was confirmed (paid),
    write its one refund entry ``reason``; returns the booking's cancel entry, if any
    (also one written by an earlier cancel: cancelling twice writes nothing more). The
    merchant's cancel and the customer's (engine.services.manage) share this."""
    shop = session.get(Shop, c.shop_id)
    assert shop is not None and c.order_id is not None and c.line_item_id is not None
    # The order's lock first, then the booking's: the order webhooks take them in
    # this order, and refund entries are written under the order's lock.
    order = lock_order(session, c.shop_id, c.order_id, now)
    session.refresh(c, with_for_update=True)
    was_confirmed = c.status == CONFIRMED
    if cancel_booking(session, c, now, by=by) and was_confirmed:
        refund_cancelled_booking(session, shop, order, c, reason, now)
    return session.scalar(select(Refund).where(
        Refund.shop_id == c.shop_id, Refund.order_id == c.order_id,
        Refund.line_item_id == c.line_item_id, Refund.kind == REFUND_CANCEL))


def list_refunds(db: Database, shop_id: str) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = session.scalars(select(Refund).where(Refund.shop_id == shop_id)
                               .order_by(Refund.created_at, Refund.id))
        return [{"id": r.id, "order_id": r.order_id, "line_item_id": r.line_item_id,
                 "hold": r.hold_id, "reason": r.reason, "amount": r.amount,
                 "quantity": r.quantity,
                 "currency": r.currency, "created_at": r.created_at.strftime(ISO),
                 "shopify_refund": None if r.shopify_status is None else {
                     "status": r.shopify_status, "id": r.shopify_refund_id,
                     "error": r.shopify_error}}
                for r in rows]
