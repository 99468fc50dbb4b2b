"""The merchant's bookings: list (with filters), cancel, mark a no-show, and the refund log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.errors import Conflict, NotFound, ValidationError
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
    PENDING,
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


#: The ``status`` filter's words: the contract's three statuses, and ``no_show`` (a
#: confirmed booking the merchant marked; its ``status`` stays ``confirmed``).
STATUS_FILTERS = ("pending", "confirmed", "cancelled", "no_show")
#: The longest customer search (``q``) accepted.
MAX_QUERY = 100
_ID_MAX = 64


@dataclass(frozen=True)
class BookingFilter:
    """What ``GET /admin/api/bookings`` narrows the list to, besides the range. Every
    part is applied in SQL (:func:`booking_rows`); None: not filtered on."""

    expert: str | None = None
    service: str | None = None
    status: str | None = None
    q: str | None = None


NO_FILTER = BookingFilter()


def _id_param(params: dict[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > _ID_MAX or not value.isprintable() or value.strip() != value:
        raise ValidationError(f"{name} must be an id", field=name)
    return value


def parse_filter(params: dict[str, str]) -> BookingFilter:
    """``expert``, ``service``, ``status`` and ``q`` query parameters, all optional (an
    empty one is as if left out). An id names no booking of this shop: the list is empty,
    not an error. ``q`` is at most :data:`MAX_QUERY` characters, no control characters."""
    status = params.get("status") or None
    if status is not None and status not in STATUS_FILTERS:
        raise ValidationError(f"status must be one of {', '.join(STATUS_FILTERS)}",
                              field="status")
    q = params.get("q")
    if q is not None:
        q = q.strip()
        if len(q) > MAX_QUERY:
            raise ValidationError(f"q is longer than {MAX_QUERY} characters", field="q")
        if not q.isprintable():
            raise ValidationError("q may not contain control characters", field="q")
    return BookingFilter(expert=_id_param(params, "expert"),
                         service=_id_param(params, "service"), status=status, q=q or None)


def _filtered(q: Select[Claim], f: BookingFilter) -> Select[Claim]:
    if f.expert is not None:
        q = q.where(Claim.expert_id == f.expert)
    if f.service is not None:
        q = q.where(Claim.service_id == f.service)
    if f.status == "no_show":
        q = q.where(Claim.status == CONFIRMED, Claim.no_show_at.is_not(None))
    elif f.status == "pending":
        q = q.where(Claim.status == PENDING)
    elif f.status is not None:
        q = q.where(Claim.status == f.status)
    if f.q is not None:
        # Case-insensitive substring of the name or the email; LIKE's wildcards in the
        # search are escaped (autoescape). lower() is Unicode-aware on PostgreSQL; on
        # SQLite it folds ASCII letters only (docs/api.md says so).
        needle = f.q.lower()
        q = q.where(or_(func.lower(Claim.customer_name).contains(needle, autoescape=True),
                        func.lower(Claim.customer_email).contains(needle, autoescape=True)))
    return q


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
        # The merchant's attendance mark (migration 0014): a confirmed booking whose end
        # has passed, marked a no-show; its status stays confirmed.
        "no_show": c.no_show_at is not None and c.status == CONFIRMED,
        "no_show_at": (c.no_show_at.strftime(ISO)
                       if c.no_show_at is not None and c.status == CONFIRMED else None),
        # What happened to the calendar event and the messages (engine/services/outbox.py).
        "delivery": delivery_status(session, c.id) if delivery is _UNSET else delivery,
    }


def booking_rows(session: Session, shop_id: str, lo: datetime | None,
                 hi: datetime | None, filters: BookingFilter = NO_FILTER) -> list[Claim]:
    """The shop's bookings starting in ``[lo, hi)`` that pass ``filters``, by start: one
    query (the export and the list share it)."""
    q = (select(Claim).where(Claim.shop_id == shop_id, Claim.status.in_(BOOKING_STATUSES),
                             Claim.order_id.is_not(None))
         .order_by(Claim.start_at, Claim.id))
    if lo is not None:
        q = q.where(Claim.start_at >= lo)
    if hi is not None:
        q = q.where(Claim.start_at < hi)
    return list(session.scalars(_filtered(q, filters)))


def list_bookings(db: Database, shop_id: str, lo: datetime | None,
                  hi: datetime | None, filters: BookingFilter = NO_FILTER
                  ) -> list[dict[str, Any]]:
    """The admin's list: a fixed number of queries whatever its length (the bookings,
    the shop's services and experts for their names, the deliveries in bulk)."""
    with db.read() as session:
        rows = booking_rows(session, shop_id, lo, hi, filters)
        # Into the identity map, held here (it keeps objects only while referenced), so
        # that render_booking's session.get finds each service and expert there.
        named: list[object] = []
        if rows:
            named += session.scalars(select(Service).where(Service.shop_id == shop_id))
            named += session.scalars(select(Expert).where(Expert.shop_id == shop_id))
        deliveries = delivery_statuses(session, [c.id for c in rows])
        out = [render_booking(session, c, deliveries[c.id]) for c in rows]
        del named
        return out


def _booking(session: Session, shop_id: str, booking_id: str) -> Claim:
    c = session.get(Claim, booking_id)
    if c is None or c.shop_id != shop_id or c.order_id is None \
            or c.status not in BOOKING_STATUSES:
        raise NotFound(f"no booking {booking_id!r}")
    return c


def get_booking(db: Database, shop_id: str, booking_id: str) -> dict[str, Any]:
    with db.read() as session:
        return render_booking(session, _booking(session, shop_id, booking_id))


def parse_no_show(doc: Any) -> bool:
    """``{"no_show": true | false}``, nothing else."""
    if not isinstance(doc, dict):
        raise ValidationError("the request body must be a JSON object")
    unknown = sorted(set(doc) - {"no_show"})
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0])
    if "no_show" not in doc:
        raise ValidationError("no_show is required", field="no_show")
    if not isinstance(doc["no_show"], bool):
        raise ValidationError("no_show must be true or false", field="no_show")
    return bool(doc["no_show"])


def mark_no_show(db: Database, clock: Clock, shop_id: str, booking_id: str,
                 no_show: bool) -> dict[str, Any]:
    """Mark (``no_show`` true) or unmark a booking as a no-show. Only a confirmed booking
    whose end has passed (by ``clock``) may be marked: a pending or cancelled one is
    ``409 not_confirmed``, one not over yet ``409 not_past``. Marking again keeps the first
    mark's time; unmarking is always allowed (and a no-op on an unmarked booking). The
    status stays what it is; nothing is sent to anyone."""
    now = clock.now()
    with db.write() as session:
        c = _booking(session, shop_id, booking_id)
        session.refresh(c, with_for_update=True)
        if no_show:
            if c.status != CONFIRMED:
                raise Conflict(f"only a confirmed booking can be marked a no-show; this one "
                               f"is {c.status}", code="not_confirmed")
            if c.end_at > now:
                raise Conflict("a booking can be marked a no-show only once it has ended",
                               code="not_past")
            if c.no_show_at is None:
                c.no_show_at = now
                c.updated_at = now
        elif c.no_show_at is not None:
            c.no_show_at = None
            c.updated_at = now
        session.flush()
        return render_booking(session, c)


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
