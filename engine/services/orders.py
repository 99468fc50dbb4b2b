"""Order webhooks: turning paid orders into bookings, exactly once, whatever the delivery.

Convergence rests on two facts:

* An order's state only moves forward — ``none < pending < paid < cancelled`` — and each
  delivery moves it to ``max(current, what the delivery says)``. A stale or reordered
  delivery therefore never undoes a newer state: an ``orders/create`` that says
  "pending" after ``orders/paid`` changes nothing, a ``paid`` after ``cancelled`` changes
  nothing, and a cancel that arrives first leaves nothing to book when the create comes.
  The newest ``X-Shopify-Triggered-At`` / ``updated_at`` is kept on the order row.
* Every line item is decided once — booked (the claim carries the order and line item
  ids) or refunded (one refund-log row, unique per order and line item) — and never
  decided again, so redeliveries find the decision and stop.

All of it runs in one transaction per delivery, with the order row locked (PostgreSQL:
``SELECT … FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE``), after the webhook id was recorded.
External work (calendar, video, mail) is only written to the outbox here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.services import shopify_actions
from engine.services.claims import SlotUnavailable, expire_stale_holds, write_claim
from engine.store import new_id
from engine.store.models import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    HELD,
    PENDING,
    RELEASED,
    Claim,
    Order,
    OutboxItem,
    Refund,
    Reminder,
    Shop,
    ShopSettings,
)

PAID_STATUSES = frozenset({"paid", "partially_paid", "authorized"})
RANK = {"none": 0, "pending": 1, "paid": 2, "cancelled": 3}
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class LineItem:
    id: str
    hold_id: str | None
    price: Decimal
    quantity: int


@dataclass(frozen=True)
class OrderEvent:
    """What one order delivery says, parsed and bounded."""

    order_id: str
    state: str  # pending | paid | cancelled
    currency: str | None
    customer_id: str | None
    customer_name: str | None
    customer_email: str | None
    event_at: datetime | None
    lines: list[LineItem] = field(default_factory=list)


class BadPayload(ValueError):
    pass


def _clean(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = CONTROL.sub("", value).strip()
    return value[:limit] or None


def _id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= 64:
        return value.strip()
    return None


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 instant from Shopify (header or payload); naive counts as UTC; anything
    unparseable is None (a timestamp is advisory, never a reason to refuse a delivery)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _properties(raw: Any) -> dict[str, str]:
    """Line-item properties: Shopify sends ``[{"name", "value"}]``; a dict is accepted."""
    out: dict[str, str] = {}
    if isinstance(raw, dict):
        raw = [{"name": k, "value": v} for k, v in raw.items()]
    if isinstance(raw, list):
        for p in raw:
            if isinstance(p, dict) and isinstance(p.get("name"), str):
                value = p.get("value")
                out[p["name"]] = value if isinstance(value, str) else str(value)
    return out


def parse_order(topic: str, payload: Any, triggered_at: datetime | None) -> OrderEvent:
    if not isinstance(payload, dict):
        raise BadPayload("the order payload must be a JSON object")
    order_id = _id(payload.get("id"))
    if order_id is None:
        raise BadPayload("the order payload has no id")
    if topic == "orders/cancelled" or payload.get("cancelled_at"):
        state = "cancelled"
    elif topic == "orders/paid" or payload.get("financial_status") in PAID_STATUSES:
        state = "paid"
    else:
        state = "pending"
    raw_customer = payload.get("customer")
    customer: dict[str, Any] = raw_customer if isinstance(raw_customer, dict) else {}
    names = [_clean(customer.get("first_name"), 100), _clean(customer.get("last_name"), 100)]
    name = " ".join(n for n in names if n) or None
    if name is None and isinstance(payload.get("billing_address"), dict):
        name = _clean(payload["billing_address"].get("name"), 200)
    email = _clean(payload.get("email"), 320) or _clean(customer.get("email"), 320)
    if email is not None and ("@" not in email or " " in email):
        email = None
    lines: list[LineItem] = []
    raw_lines = payload.get("line_items")
    for raw in raw_lines if isinstance(raw_lines, list) else []:
        if not isinstance(raw, dict):
            continue
        line_id = _id(raw.get("id"))
        props = _properties(raw.get("properties"))
        hold = props.get("_hold")
        if line_id is None or hold is None:
            continue  # not one of ours
        try:
            price = Decimal(str(raw.get("price", "0")))
            if not price.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            price = Decimal("0")
        quantity = raw.get("quantity", 1)
        quantity = quantity if isinstance(quantity, int) and not isinstance(quantity, bool) \
            and 0 < quantity < 10_000 else 1
        lines.append(LineItem(line_id, hold.strip()[:64] or None, price, quantity))
    currency = _clean(payload.get("currency"), 8)
    event_at = triggered_at or parse_time(payload.get("updated_at"))
    return OrderEvent(order_id, state, currency, _id(customer.get("id")), name, email,
                      event_at, lines)


# --------------------------------------------------------------------------- processing


def _lock_order(session: Session, shop_id: str, order_id: str, now: datetime) -> Order:
    order = session.scalar(select(Order).where(Order.shop_id == shop_id,
                                               Order.order_id == order_id)
                           .with_for_update())
    if order is None:
        try:
            with session.begin_nested():
                order = Order(shop_id=shop_id, order_id=order_id, state="none",
                              created_at=now, updated_at=now)
                session.add(order)
                session.flush()
        except IntegrityError:  # a concurrent delivery created it first: take its row
            order = session.scalar(select(Order).where(Order.shop_id == shop_id,
                                                       Order.order_id == order_id)
                                   .with_for_update())
            assert order is not None
    return order


def record_outbox(session: Session, claim: Claim, kind: str, now: datetime) -> None:
    session.add(OutboxItem(shop_id=claim.shop_id, booking_id=claim.id, kind=kind,
                           payload={"sequence": claim.sequence}, status="pending",
                           attempts=0, available_at=now, created_at=now))


def schedule_reminders(session: Session, claim: Claim, now: datetime) -> None:
    """One reminder row per offset; one already due at confirmation is skipped (the
    confirmation stands in for it)."""
    settings = session.get(ShopSettings, claim.shop_id)
    offsets = settings.reminders if settings is not None else [1440, 60]
    for offset in sorted(set(int(o) for o in offsets)):
        due = claim.start_at - timedelta(minutes=offset)
        session.add(Reminder(shop_id=claim.shop_id, booking_id=claim.id, offset_minutes=offset,
                             due_at=due, status="pending" if due > now else "skipped"))


def confirm(session: Session, shop: Shop, claim: Claim, now: datetime) -> None:
    """Confirm a paid booking and record what follows: the confirmation work, its
    reminders and, for a shop on Shopify, tagging the order."""
    claim.status = CONFIRMED
    claim.confirmed_at = now
    claim.updated_at = now
    session.flush()
    record_outbox(session, claim, "booking.confirmed", now)
    schedule_reminders(session, claim, now)
    shopify_actions.record_tag(session, shop, claim, now)


def cancel_booking(session: Session, claim: Claim, now: datetime) -> bool:
    """Cancel a pending or confirmed booking; frees its time. False if nothing changed."""
    if claim.status not in (PENDING, CONFIRMED):
        return False
    was_confirmed = claim.status == CONFIRMED
    claim.status = CANCELLED
    claim.cancelled_at = now
    claim.updated_at = now
    claim.sequence += 1
    session.execute(update(Reminder).where(Reminder.booking_id == claim.id,
                                           Reminder.status == "pending")
                    .values(status="cancelled"))
    session.flush()
    if was_confirmed:
        record_outbox(session, claim, "booking.cancelled", now)
    return True


def _refund(session: Session, shop: Shop, event: OrderEvent, line: LineItem, reason: str,
            now: datetime) -> None:
    amount = line.price * line.quantity
    refund = Refund(id=new_id("ref"), shop_id=shop.id, order_id=event.order_id,
                    line_item_id=line.id, hold_id=line.hold_id, reason=reason,
                    amount=str(amount), currency=event.currency, quantity=line.quantity,
                    created_at=now)
    session.add(refund)
    shopify_actions.record_refund(session, shop, refund, now)
    session.flush()


def _book_line(session: Session, shop: Shop, event: OrderEvent, line: LineItem, paid: bool,
               now: datetime) -> None:
    """Decide one line item once: book it (from its hold) or log a refund."""
    decided = session.scalar(select(Claim).where(Claim.shop_id == shop.id,
                                                 Claim.order_id == event.order_id,
                                                 Claim.line_item_id == line.id))
    if decided is not None:
        if paid and decided.status == PENDING:
            confirm(session, shop, decided, now)
        return
    if session.scalar(select(Refund.id).where(Refund.shop_id == shop.id,
                                              Refund.order_id == event.order_id,
                                              Refund.line_item_id == line.id)):
        return
    if not shop.installed:
        _refund(session, shop, event, line, "shop_uninstalled", now)
        return
    hold = session.scalar(select(Claim).where(Claim.id == line.hold_id).with_for_update()) \
        if line.hold_id else None
    if hold is None or hold.shop_id != shop.id:
        _refund(session, shop, event, line, "hold_unknown", now)
        return
    if hold.order_id is not None or hold.status not in (HELD, EXPIRED, RELEASED):
        # Another order (or line) already turned this hold into a booking.
        _refund(session, shop, event, line, "slot_taken", now)
        return
    # An expired or released hold still books if its time is free: the database decides.
    if hold.status != HELD or (hold.expires_at is not None and hold.expires_at <= now):
        expire_stale_holds(session, now, expert_id=hold.expert_id, start=hold.claim_start,
                           end=hold.claim_end)
        session.refresh(hold)
    try:
        write_claim(session, hold, order_id=event.order_id, line_item_id=line.id,
                    customer_id=event.customer_id, customer_name=event.customer_name,
                    customer_email=event.customer_email, expires_at=None, status=PENDING,
                    updated_at=now)
    except SlotUnavailable:
        session.refresh(hold)
        _refund(session, shop, event, line, "slot_taken", now)
        return
    if paid:
        confirm(session, shop, hold, now)


def _cancel_order(session: Session, shop: Shop, event: OrderEvent, now: datetime) -> None:
    for claim in session.scalars(select(Claim).where(Claim.shop_id == shop.id,
                                                     Claim.order_id == event.order_id)):
        cancel_booking(session, claim, now)
    # Holds named by the cancelled order that were never booked: free them now, so a
    # create that arrives after the cancel finds nothing to book.
    for line in event.lines:
        if line.hold_id:
            session.execute(update(Claim)
                            .where(Claim.id == line.hold_id, Claim.shop_id == shop.id,
                                   Claim.order_id.is_(None), Claim.status == HELD)
                            .values(status=RELEASED, updated_at=now))


def apply_order(session: Session, shop: Shop, event: OrderEvent, now: datetime) -> str:
    """Apply one order delivery; returns the order's state afterwards."""
    order = _lock_order(session, shop.id, event.order_id, now)
    if RANK[event.state] > RANK[order.state]:
        order.state = event.state
    if event.currency and not order.currency:
        order.currency = event.currency
    if event.event_at is not None and (order.last_event_at is None
                                       or event.event_at > order.last_event_at):
        order.last_event_at = event.event_at
    order.updated_at = now
    if order.state == "cancelled":
        _cancel_order(session, shop, event, now)
    else:
        paid = order.state == "paid"
        for line in event.lines:
            _book_line(session, shop, event, line, paid, now)
    session.flush()
    return order.state
