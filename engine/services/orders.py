"""Order webhooks: turning paid orders into bookings, exactly once, whatever the delivery.

Convergence rests on two facts:

* An order's state only moves forward — ``none < pending < paid < cancelled`` — and each
  delivery moves it to ``max(current, what the delivery says)``. A stale or reordered
  delivery therefore never undoes a newer state: an ``orders/create`` that says
  "pending" after ``orders/paid`` changes nothing, a ``paid`` after ``cancelled`` changes
  nothing, and a cancel that arrives first leaves nothing to book when the create comes.
  The newest ``X-Shopify-Triggered-At`` / ``updated_at`` is kept on the order row.
* Every line item is decided once — booked (the claim carries the order and line item
  ids) or not honoured (one refund-log entry of kind ``line``) — and never decided
  again, so redeliveries find the decision and stop. Units beyond the hold's seats are
  one more entry of kind ``extra``, written with the booking; the refund log's unique
  key ``(shop, order, line item, kind)`` backs this up in the database.

What was bought must be what was held (:func:`_decide`): the line's variant (else
product) must be the held service's, the start must not have passed, and a line whose
hold is no longer live books only if its start is still a slot the engine offers now
(``engine.domain.slots.is_offered``, as holds are judged) and the database accepts the
claim. A pending booking keeps its slot for the shop's ``pending_hold_hours``; then it
lapses (``engine.services.claims.expire_stale_holds``) and a later paid delivery books
it only on the same terms as a late line.

All of it runs in one transaction per delivery, with the order row locked (PostgreSQL:
``SELECT … FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE``), after the webhook id was recorded.
External work (calendar, video, mail, Shopify refunds) is only written to the outbox here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Table, bindparam, case, func, or_, select, union_all, update
from sqlalchemy import insert as insert_into
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.domain.capacity import session_key
from engine.domain.mail import clean_text
from engine.domain.slots import is_offered
from engine.errors import NotFound
from engine.services import shopify_actions
from engine.services.availability import expert_calendars, rules_of
from engine.services.capacity import LimitReached
from engine.services.catalog import shopify_number
from engine.services.claims import SlotUnavailable, expire_stale_holds, write_claim
from engine.services.shops import ShopRef
from engine.store import new_id
from engine.store.models import (
    CANCELLED,
    CONFIRMED,
    EXPIRED,
    HELD,
    PENDING,
    REFUND_CANCEL,
    REFUND_EXTRA,
    REFUND_LINE,
    RELEASED,
    Claim,
    Expert,
    Order,
    OutboxItem,
    Refund,
    Reminder,
    Service,
    Shop,
    ShopSettings,
)

PAID_STATUSES = frozenset({"paid", "partially_paid", "authorized"})
RANK = {"none": 0, "pending": 1, "paid": 2, "cancelled": 3}
# Control characters and lone surrogates: neither may reach the database (PostgreSQL
# refuses NUL, a lone surrogate cannot be encoded as UTF-8 at all).
UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# Ids kept as text: printable ASCII without spaces, as Shopify's and ours are.
ID_TEXT = re.compile(r"[\x21-\x7e]{1,64}")
# refunds.quantity is a 32-bit integer: the most units one log entry can record.
MAX_QUANTITY = 2**31 - 1
MAX_PRICE = Decimal(10) ** 12
PRICE_PLACES = Decimal("0.000001")
DEFAULT_PENDING_HOURS = 48
DEFAULT_REMINDERS = (1440, 60)  # a shop without settings: a day and an hour before

# Refund-log reasons (the contract's list).
SLOT_UNAVAILABLE = "slot_unavailable"
HOLD_UNKNOWN = "hold_unknown"
WRONG_PRODUCT = "wrong_product"
EXTRA_QUANTITY = "extra_quantity"
SLOT_PASSED = "slot_passed"
SHOP_UNINSTALLED = "shop_uninstalled"
CUSTOMER_CANCELLED = "customer_cancelled"
MERCHANT_CANCELLED = "merchant_cancelled"


@dataclass(frozen=True)
class LineItem:
    """One line of ours (it carries a ``_hold`` property). ``hold_id`` is None when the
    property's value cannot be a hold id (the line is then refunded as hold_unknown);
    ``product_id`` / ``variant_id`` are decimal strings (see catalog.shopify_number)."""

    id: str
    hold_id: str | None
    price: Decimal
    quantity: int
    product_id: str | None = None
    variant_id: str | None = None


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
    """Text as it may be stored: :func:`engine.domain.mail.clean_text` (one line, control
    and bidi characters and lone surrogates out, whitespace collapsed) of at most
    ``limit`` characters; None for anything that is not a string, or nothing left."""
    if not isinstance(value, str):
        return None
    return clean_text(value, limit) or None


def _id(value: Any) -> str | None:
    """An id kept as a string: a non-negative integer (any size up to 30 digits), or
    printable ASCII text of at most 64 characters; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 <= value < 10 ** 30 else None
    if isinstance(value, str):
        stripped: str = value.strip()
        if ID_TEXT.fullmatch(stripped):
            return stripped
    return None


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 instant from Shopify (header or payload); naive counts as UTC; anything
    unparseable is None (a timestamp is advisory, never a reason to refuse a delivery)."""
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset past year 1 or 9999
        return None


def _properties(raw: Any) -> dict[str, Any]:
    """Line-item properties: Shopify sends ``[{"name", "value"}]``; a dict is accepted.
    The first entry of a name wins; values are returned as sent (any JSON value)."""
    out: dict[str, Any] = {}
    if isinstance(raw, dict):
        raw = [{"name": k, "value": v} for k, v in raw.items()]
    if isinstance(raw, list):
        for p in raw:
            if isinstance(p, dict) and isinstance(p.get("name"), str):
                out.setdefault(p["name"], p.get("value"))
    return out


def _price(value: Any) -> Decimal:
    """A unit price: a decimal string or a JSON number, 0 <= price < 10^12, at most six
    decimal places; anything else is 0 (the refund log then shows 0, never a crash)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return Decimal(0)
    if isinstance(value, int) and not -MAX_PRICE < value < MAX_PRICE:
        return Decimal(0)  # checked before str(): a huge int would be slow to print
    try:
        price = Decimal(value.strip() if isinstance(value, str) else str(value))
        if not price.is_finite() or not Decimal(0) <= price < MAX_PRICE:
            return Decimal(0)
        if price.as_tuple().exponent < -6:  # type: ignore[operator]
            price = price.quantize(PRICE_PLACES)
        return price
    except (InvalidOperation, ValueError):
        return Decimal(0)


def _quantity(value: Any) -> int | None:
    """Units bought: a whole number (a JSON integer, an integral float, or a string of
    ASCII digits), taken as it is up to MAX_QUANTITY and as MAX_QUANTITY above it (so
    every unit beyond the hold's seats that can be logged is: a large quantity is never
    read as one unit); 0 or less is None (nothing bought); anything else counts as one
    unit (what Shopify always sends is an integer)."""
    if isinstance(value, bool):
        return 1
    if isinstance(value, float) and value.is_integer():
        value = int(min(max(value, -1.0), float(MAX_QUANTITY)))
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        digits = value.strip().lstrip("0") or "0"
        value = int(digits) if len(digits) <= 10 else MAX_QUANTITY
    if isinstance(value, int):
        if value <= 0:
            return None
        return min(value, MAX_QUANTITY)
    return 1


def amount_text(price: Decimal, units: int) -> str:
    """price x units as a plain decimal string (never exponent notation)."""
    return format(price * units, "f")


def parse_order(topic: str, payload: Any, triggered_at: datetime | None) -> OrderEvent:
    """What an order delivery says. Total: any JSON value gives a sane OrderEvent or
    raises BadPayload (no id, not an object) -- never another exception. Every text in
    the event is safe to store (no control characters or lone surrogates, bounded)."""
    if not isinstance(payload, dict):
        raise BadPayload("the order payload must be a JSON object")
    order_id = _id(payload.get("id"))
    if order_id is None:
        raise BadPayload("the order payload has no usable id")
    financial = payload.get("financial_status")
    financial = financial.strip().lower() if isinstance(financial, str) else None
    cancelled_at = payload.get("cancelled_at")
    if topic == "orders/cancelled" or (isinstance(cancelled_at, str) and cancelled_at.strip()):
        state = "cancelled"
    elif topic == "orders/paid" or financial in PAID_STATUSES:
        state = "paid"
    else:
        state = "pending"
    raw_customer = payload.get("customer")
    customer: dict[str, Any] = raw_customer if isinstance(raw_customer, dict) else {}
    names = [_clean(customer.get("first_name"), 100), _clean(customer.get("last_name"), 100)]
    name = " ".join(n for n in names if n) or None
    billing = payload.get("billing_address")
    if name is None and isinstance(billing, dict):
        name = _clean(billing.get("name"), 200)
    email = _clean(payload.get("email"), 320) or _clean(customer.get("email"), 320)
    if email is not None and ("@" not in email or " " in email):
        email = None
    lines: list[LineItem] = []
    raw_lines = payload.get("line_items")
    for raw in raw_lines if isinstance(raw_lines, list) else []:
        if not isinstance(raw, dict):
            continue
        props = _properties(raw.get("properties"))
        if "_hold" not in props:
            continue  # not one of ours
        line_id = _id(raw.get("id"))
        quantity = _quantity(raw.get("quantity", 1))
        if line_id is None or quantity is None:
            continue  # no line to key a decision by, or nothing bought
        hold_value = props["_hold"]
        hold = _id(hold_value) if isinstance(hold_value, str) else None
        lines.append(LineItem(line_id, hold, _price(raw.get("price", "0")), quantity,
                              shopify_number(raw.get("product_id")),
                              shopify_number(raw.get("variant_id"))))
    currency = _clean(payload.get("currency"), 8)
    event_at = triggered_at or parse_time(payload.get("updated_at"))
    return OrderEvent(order_id, state, currency, _id(customer.get("id")), name, email,
                      event_at, lines)


# --------------------------------------------------------------------------- processing


def lock_order(session: Session, shop_id: str, order_id: str, now: datetime) -> Order:
    """The order's row, locked for this transaction (created in state ``none`` if new).
    Everything that decides an order's lines or writes its refund entries takes this
    lock first, so those decisions are serialized per order.

    One statement, new order or not: an upsert whose no-op update locks an existing row
    (as ``FOR UPDATE`` would for everyone else taking this lock) and returns it; a
    concurrent delivery creating the same order waits for the other to commit, then
    takes its row."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Order).values(shop_id=shop_id, order_id=order_id, state="none",
                                created_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_update(index_elements=["shop_id", "order_id"],
                                      set_={"updated_at": Order.__table__.c.updated_at})
    order = session.scalars(stmt.returning(Order),
                            execution_options={"populate_existing": True}).one()
    return order


def _rank(state: Any) -> Any:
    """An order state's :data:`RANK`, in SQL."""
    return case(RANK, value=state, else_=0)


def open_order(session: Session, shop_id: str, event: OrderEvent, now: datetime
               ) -> tuple[Order, bool]:
    """The order's row after this delivery, locked for the transaction as
    :func:`lock_order` locks it, and whether this delivery created it.

    A new order is inserted as the delivery says (one statement). An existing one (the
    insert did nothing: a concurrent delivery creating it was waited for) is moved
    forward by one ``UPDATE ... RETURNING``: its state to the higher-ranked of the two,
    its currency kept if it had one, the newest event time kept. Nothing decides an
    order's lines but under this lock, and only after its row exists, so an order this
    delivery created has no decided line and no refund entry yet."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    created = session.scalars(
        insert(Order).values(shop_id=shop_id, order_id=event.order_id, state=event.state,
                             currency=event.currency, last_event_at=event.event_at,
                             created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["shop_id", "order_id"])
        .returning(Order), execution_options={"populate_existing": True}).first()
    if created is not None:
        return created, True
    return move_forward(session, shop_id, event, now), False


def move_forward(session: Session, shop_id: str, event: OrderEvent, now: datetime) -> Order:
    """An existing order moved forward by what the delivery says, in one ``UPDATE ...
    RETURNING`` that locks its row (see :func:`open_order`)."""
    later = event.event_at
    moved = (update(Order)
             .where(Order.shop_id == shop_id, Order.order_id == event.order_id)
             .values(state=case((_rank(Order.state) < RANK[event.state], event.state),
                                else_=Order.state),
                     currency=func.coalesce(Order.currency, event.currency),
                     last_event_at=Order.last_event_at if later is None else case(
                         (or_(Order.last_event_at.is_(None), Order.last_event_at < later),
                          later), else_=Order.last_event_at),
                     updated_at=now)
             .returning(Order)
             .execution_options(populate_existing=True, synchronize_session=False))
    return session.scalars(moved).one()


def record_outbox(session: Session, claim: Claim, kind: str, now: datetime) -> None:
    session.add(OutboxItem(shop_id=claim.shop_id, booking_id=claim.id, kind=kind,
                           payload={"sequence": claim.sequence}, status="pending",
                           attempts=0, available_at=now, created_at=now))


def schedule_reminders(session: Session, claim: Claim, now: datetime) -> None:
    """One reminder row per offset; one already due at confirmation is skipped (the
    confirmation stands in for it)."""
    settings = session.get(ShopSettings, claim.shop_id)
    offsets = settings.reminders if settings is not None else DEFAULT_REMINDERS
    for offset, due, status in reminders_of(offsets, claim.start_at, now):
        session.add(Reminder(shop_id=claim.shop_id, booking_id=claim.id, offset_minutes=offset,
                             due_at=due, status=status))


def reminders_of(offsets: Any, start: datetime, now: datetime
                 ) -> list[tuple[int, datetime, str]]:
    """The reminders of a booking starting at ``start``: (offset in minutes, due, status)
    per distinct offset, ``skipped`` when already due."""
    out = []
    for offset in sorted(set(int(o) for o in offsets)):
        due = start - timedelta(minutes=offset)
        out.append((offset, due, "pending" if due > now else "skipped"))
    return out


def confirmed_changes(now: datetime) -> dict[str, Any]:
    """What confirming a booking changes on its claim: a confirmed booking has no
    deadline (``expires_at`` is cleared)."""
    return {"status": CONFIRMED, "confirmed_at": now, "updated_at": now, "expires_at": None}


def confirm(session: Session, shop: Shop, claim: Claim, now: datetime) -> None:
    """Confirm a paid booking and record what follows (:func:`after_confirm`)."""
    for name, value in confirmed_changes(now).items():
        setattr(claim, name, value)
    session.flush()
    after_confirm(session, shop, claim, now)


def after_confirm(session: Session, shop: Shop, claim: Claim, now: datetime) -> None:
    """What follows a booking's confirmation (its claim already written confirmed): the
    confirmation work, its reminders and, for a shop on Shopify, tagging the order."""
    record_outbox(session, claim, "booking.confirmed", now)
    schedule_reminders(session, claim, now)
    shopify_actions.record_tag(session, shop, claim, now)


def cancel_booking(session: Session, claim: Claim, now: datetime, *,
                   by: str | None = None) -> bool:
    """Cancel a pending or confirmed booking; frees its time. ``by`` records who
    (merchant | customer | order). False if nothing changed. Refund entries are the
    caller's: see :func:`refund_cancelled_booking`."""
    if claim.status not in (PENDING, CONFIRMED):
        return False
    was_confirmed = claim.status == CONFIRMED
    claim.status = CANCELLED
    claim.cancelled_at = now
    claim.cancelled_by = by
    claim.updated_at = now
    claim.sequence += 1
    session.execute(update(Reminder).where(Reminder.booking_id == claim.id,
                                           Reminder.status == "pending")
                    .values(status="cancelled"))
    session.flush()
    if was_confirmed:
        record_outbox(session, claim, "booking.cancelled", now)
    return True


def hold_seats(hold: Claim) -> int:
    """The seats a hold holds: the most units of its line that can be booked."""
    return max(1, int(hold.seats or 1))


def refund_entry(session: Session, shop: Shop, order: Order, *, line_item_id: str,
                 hold_id: str | None, kind: str, reason: str, amount: str,
                 currency: str | None, quantity: int, now: datetime) -> Refund | None:
    """Write one refund-log entry of ``kind`` for the line, unless the line has one of
    that kind already (then None: redeliveries and repeated cancels write nothing more).
    Queues the Shopify refund when auto-refund is on and the order is paid; an unpaid
    order's entry waits for the payment (engine.services.shopify_actions).

    Callers hold the order's lock (:func:`lock_order`), so the check and the insert are
    one step; the unique key (shop, order, line item, kind) is the database's backstop."""
    existing = session.scalar(select(Refund).where(
        Refund.shop_id == shop.id, Refund.order_id == order.order_id,
        Refund.line_item_id == line_item_id, Refund.kind == kind))
    if existing is not None:
        return None
    refund = Refund(id=new_id("ref"), shop_id=shop.id, order_id=order.order_id,
                    line_item_id=line_item_id, hold_id=hold_id, kind=kind, reason=reason,
                    amount=amount, currency=currency or order.currency, quantity=quantity,
                    created_at=now)
    session.add(refund)
    shopify_actions.record_refund(session, shop, refund, order.state, now)
    session.flush()
    return refund


def refund_cancelled_booking(session: Session, shop: Shop, order: Order, claim: Claim,
                             reason: str, now: datetime) -> Refund | None:
    """The refund entry of a paid booking cancelled by the merchant or the customer
    (``merchant_cancelled`` / ``customer_cancelled``): what its line paid for the units
    it booked. One per booking (kind ``cancel``); None if it exists already. A booking
    of before migration 0007 has no price on record: its entry says 0 (the Shopify
    refund, by line item and quantity, is still right)."""
    assert claim.line_item_id is not None
    units = claim.line_quantity or 1
    return refund_entry(session, shop, order, line_item_id=claim.line_item_id,
                        hold_id=claim.id, kind=REFUND_CANCEL, reason=reason,
                        amount=amount_text(Decimal(claim.line_price or "0"), units),
                        currency=claim.currency, quantity=units, now=now)


def _not_honoured(session: Session, shop: Shop, order: Order, event: OrderEvent,
                  line: LineItem, reason: str, now: datetime, units: int | None = None
                  ) -> None:
    """Decide the line as not honoured: one ``line`` entry for ``units`` (all of the
    line's units unless given: a lapsed booking's extra units were logged already)."""
    units = line.quantity if units is None else units
    refund_entry(session, shop, order, line_item_id=line.id, hold_id=line.hold_id,
                 kind=REFUND_LINE, reason=reason, amount=amount_text(line.price, units),
                 currency=event.currency, quantity=units, now=now)


def _pending_hours(session: Session, shop: Shop) -> int:
    settings = session.get(ShopSettings, shop.id)
    return pending_hours_of(settings.pending_hold_hours if settings is not None else None)


def pending_hours_of(hours: int | None) -> int:
    """How long a pending booking keeps its slot, given the shop's setting (or None)."""
    return int(hours) if hours else DEFAULT_PENDING_HOURS


def _sells(service: Service | None, line: LineItem) -> bool:
    """Whether the line bought what the service sells: its variant when the service
    names one, else its product when it names one, else anything (a service with
    neither is not tied to a product)."""
    if service is None:
        return False
    return _sells_ids(service.variant_id, service.product_id, line)


def _sells_ids(variant_id: str | None, product_id: str | None, line: LineItem) -> bool:
    """:func:`_sells`, given the service's variant and product ids."""
    wanted_variant = shopify_number(variant_id)
    if wanted_variant is not None:
        return line.variant_id == wanted_variant
    wanted_product = shopify_number(product_id)
    if wanted_product is not None:
        return line.product_id == wanted_product
    return variant_id is None and product_id is None


def offered_now(session: Session, shop: Shop, claim: Claim, now: datetime) -> bool:
    """Whether the claim's start is still a slot the engine offers at ``now``: the same
    judgement a new hold gets (grid, the expert's hours, notice, horizon; ignoring what
    is taken -- the database decides that). A deleted service or expert, or an expert
    who no longer offers the service, offers nothing."""
    service = session.get(Service, claim.service_id)
    expert = session.get(Expert, claim.expert_id)
    if service is None or service.deleted_at is not None or service.shop_id != shop.id \
            or expert is None or expert.deleted_at is not None or claim.start_at.microsecond:
        return False
    day = claim.start_at.date()
    try:
        cals, _ = expert_calendars(session, ShopRef(shop.id, shop.domain, shop.timezone),
                                   service.id, expert.id, day - timedelta(days=2),
                                   day + timedelta(days=2))
    except NotFound:
        return False
    cal = next((c for c in cals if c.expert_id == expert.id), None)
    return cal is not None and is_offered(cal, rules_of(service), now=int(now.timestamp()),
                                          start=int(claim.start_at.timestamp()))


def _lapsed(claim: Claim, now: datetime) -> bool:
    """A booking that no longer holds its time: marked expired, or pending past its
    deadline (the sweeper has not come by yet)."""
    return claim.status == EXPIRED or (
        claim.status == PENDING and claim.expires_at is not None and claim.expires_at <= now)


def _rebook(session: Session, shop: Shop, order: Order, event: OrderEvent, line: LineItem,
            claim: Claim, now: datetime) -> None:
    """A paid delivery for a booking that lapsed (or whose start passed while pending):
    it books again only if its start has not passed, is still offered and is still
    free; otherwise the units it had booked are refunded (its extra units, if any, were
    logged when it was booked) and it stays out of the live set."""
    if claim.start_at <= now:
        reason: str | None = SLOT_PASSED
    elif not offered_now(session, shop, claim, now):
        reason = SLOT_UNAVAILABLE
    else:
        reason = None
    if reason is None and claim.status == EXPIRED:
        # Its time may have been taken since it lapsed: the database decides.
        expire_stale_holds(session, now, expert_id=claim.expert_id, start=claim.claim_start,
                           end=claim.claim_end)
        try:
            write_claim(session, claim, now, status=PENDING, updated_at=now)
        except (SlotUnavailable, LimitReached):
            session.refresh(claim)
            reason = SLOT_UNAVAILABLE
    # (Still pending although past its deadline: no writer has claimed over it since,
    # for each would have marked it expired first -- its time is still its own.)
    if reason is not None:
        if claim.status == PENDING:
            claim.status, claim.updated_at = EXPIRED, now
            session.flush()
        _not_honoured(session, shop, order, event, line, reason, now,
                      units=claim.line_quantity or 1)
        return
    confirm(session, shop, claim, now)


# A hold and the service it is of, in one statement; the hold locked (PostgreSQL: FOR
# UPDATE OF claims) so one hold is turned into one booking at a time.
_HOLD = (select(Claim, Service).outerjoin(Service, Service.id == Claim.service_id)
         .where(Claim.id == bindparam("hold")).with_for_update(of=Claim))


def _decide(session: Session, shop: Shop, order: Order, event: OrderEvent, line: LineItem,
            paid: bool, now: datetime, *, new: bool = False, careful: bool = False) -> None:
    """Decide one line item once: book it (from its hold) or log why not. A decided line
    may still move: pending -> confirmed when paid, lapsed -> booked again when paid
    while its time is free and offered. ``new``: the order was created by this delivery
    (:func:`open_order`), so none of its lines is decided yet and nothing is looked up.
    ``careful``: a live hold is booked through :func:`write_claim` 's savepoint too (see
    :func:`_book_live_hold`)."""
    if not new and session.scalar(select(Refund.id).where(
            Refund.shop_id == shop.id, Refund.order_id == event.order_id,
            Refund.line_item_id == line.id, Refund.kind == REFUND_LINE)):
        return  # decided: not honoured
    decided = None if new else session.scalar(
        select(Claim).where(Claim.shop_id == shop.id, Claim.order_id == event.order_id,
                            Claim.line_item_id == line.id).with_for_update())
    if decided is not None:
        if not paid:
            return
        if decided.status == PENDING and not _lapsed(decided, now) and decided.start_at > now:
            confirm(session, shop, decided, now)
        elif decided.status in (PENDING, EXPIRED):
            _rebook(session, shop, order, event, line, decided, now)
        elif decided.status == CANCELLED and decided.confirmed_at is None \
                and decided.cancelled_by in ("merchant", "customer"):
            # Cancelled while unpaid, and paid for afterwards: the money goes back.
            refund_cancelled_booking(session, shop, order, decided,
                                     f"{decided.cancelled_by}_cancelled", now)
        return
    if not shop.installed:
        _not_honoured(session, shop, order, event, line, SHOP_UNINSTALLED, now)
        return
    row = session.execute(_HOLD, {"hold": line.hold_id}).first() if line.hold_id else None
    hold, service = (row[0], row[1]) if row is not None else (None, None)
    if hold is None or hold.shop_id != shop.id:
        _not_honoured(session, shop, order, event, line, HOLD_UNKNOWN, now)
        return
    if hold.order_id is not None or hold.status not in (HELD, EXPIRED, RELEASED):
        # Another order (or line) already turned this hold into a booking.
        _not_honoured(session, shop, order, event, line, SLOT_UNAVAILABLE, now)
        return
    if not _sells(service, line):
        _not_honoured(session, shop, order, event, line, WRONG_PRODUCT, now)
        return
    if hold.start_at <= now:
        _not_honoured(session, shop, order, event, line, SLOT_PASSED, now)
        return
    live = hold.status == HELD and hold.expires_at is not None and hold.expires_at > now
    if not live:
        # A late line: its hold expired or was released. It books only if its start is
        # still offered now, and the database finds the time free.
        if not offered_now(session, shop, hold, now):
            _not_honoured(session, shop, order, event, line, SLOT_UNAVAILABLE, now)
            return
        expire_stale_holds(session, now, expert_id=hold.expert_id, start=hold.claim_start,
                           end=hold.claim_end)
        session.refresh(hold)
    seats = hold_seats(hold)
    booked = min(line.quantity, seats)
    # Paid already: the hold becomes a confirmed booking in one write (never pending
    # in between); else a pending one, until its payment or its deadline.
    status: dict[str, Any] = confirmed_changes(now) if paid else {
        "status": PENDING, "updated_at": now,
        "expires_at": now + timedelta(hours=_pending_hours(session, shop))}
    changes: dict[str, Any] = {
        "order_id": event.order_id, "line_item_id": line.id,
        "customer_id": event.customer_id, "customer_name": event.customer_name,
        "customer_email": event.customer_email, "line_price": str(line.price),
        "line_quantity": booked, "seats": booked,
        "currency": event.currency or order.currency, **status}
    if not (live and not careful and _book_live_hold(hold, changes)):
        try:
            write_claim(session, hold, now, **changes)
        except (SlotUnavailable, LimitReached):
            session.refresh(hold)
            _not_honoured(session, shop, order, event, line, SLOT_UNAVAILABLE, now)
            return
    extra = line.quantity - seats
    if extra > 0:
        # Units beyond the hold's seats are dishonoured: their share of the amount.
        refund_entry(session, shop, order, line_item_id=line.id, hold_id=line.hold_id,
                     kind=REFUND_EXTRA, reason=EXTRA_QUANTITY,
                     amount=amount_text(line.price, extra), currency=event.currency,
                     quantity=extra, now=now)
    if paid:
        after_confirm(session, shop, hold, now)


def _book_live_hold(hold: Claim, changes: dict[str, Any]) -> bool:
    """Turn a live hold (locked, its start ahead) into its booking without a savepoint,
    the capacity facts or the session upsert: the booking keeps the hold's range, its
    session and at most its seats, so it takes nothing the hold did not hold already --
    its session and counters exist and count it (they did when the hold was written),
    no other live claim of the expert may overlap it (none could overlap the hold), and
    fewer seats never pass a cap. The database has no reason to refuse it; should it
    anyway, the delivery's transaction fails and is run again with ``careful``
    (engine.services.webhooks), which goes through :func:`write_claim`. False (nothing
    changed) if the hold's session is not the one its expert, service and start name
    (a claim written before sessions existed): then the general path decides."""
    if hold.session_key != session_key(hold.expert_id, hold.service_id, hold.start_at) \
            or changes["seats"] > hold_seats(hold):
        return False
    for name, value in changes.items():
        setattr(hold, name, value)  # written with the rest of the delivery's writes
    return True


def _cancel_order(session: Session, shop_id: str, event: OrderEvent, now: datetime, *,
                  new: bool = False) -> None:
    booked = () if new else session.scalars(select(Claim).where(
        Claim.shop_id == shop_id, Claim.order_id == event.order_id))
    for claim in booked:
        cancel_booking(session, claim, now, by="order")
    # Holds named by the cancelled order that were never booked: free them now, so a
    # create that arrives after the cancel finds nothing to book.
    for line in event.lines:
        if line.hold_id:
            session.connection().execute(_RELEASE, {
                "b_hold": line.hold_id, "b_shop": shop_id, "status": RELEASED,
                "updated_at": now})


class ShopFacts(NamedTuple):
    """What an order delivery reads of its shop, with the shop row's lock, its settings
    included (engine.services.webhooks): ``settings`` is whether the shop has a
    settings row; without one its reminders and pending hours are the defaults."""

    id: str
    domain: str
    timezone: str
    installed: bool
    access_token: str | None
    settings: str | None
    reminders: Any
    pending_hold_hours: int | None


_CLAIMS = cast(Table, Claim.__table__)
_SERVICES = cast(Table, Service.__table__)
_ORDERS = cast(Table, Order.__table__)

# The columns of ShopFacts, in order, for the statement that locks the shop.
SHOP_FACTS = (Shop.__table__.c.id, Shop.__table__.c.domain, Shop.__table__.c.timezone,
              Shop.__table__.c.installed, Shop.__table__.c.access_token,
              ShopSettings.__table__.c.shop_id.label("settings"),
              ShopSettings.__table__.c.reminders,
              ShopSettings.__table__.c.pending_hold_hours)

# Statements of the path a new order takes, built once: executed on the session's
# connection (Core: no ORM objects, no unit of work). An UPDATE or INSERT without
# values() sets the columns its parameters name.
_NEW_ORDER = {
    name: insert(_ORDERS).on_conflict_do_nothing(index_elements=["shop_id", "order_id"])
    .returning(_ORDERS.c.id)
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}
# A hold and what its service sells, the hold locked as _HOLD locks it.
_HOLD_ROW = (select(_CLAIMS.c.id, _CLAIMS.c.shop_id, _CLAIMS.c.service_id,
                    _CLAIMS.c.expert_id, _CLAIMS.c.start_at, _CLAIMS.c.status,
                    _CLAIMS.c.expires_at, _CLAIMS.c.order_id, _CLAIMS.c.session_key,
                    _CLAIMS.c.seats, _CLAIMS.c.sequence,
                    _SERVICES.c.id.label("service"), _SERVICES.c.variant_id,
                    _SERVICES.c.product_id)
             .select_from(_CLAIMS.outerjoin(_SERVICES, _SERVICES.c.id == _CLAIMS.c.service_id))
             .where(_CLAIMS.c.id == bindparam("hold")).with_for_update(of=_CLAIMS))
_RELEASE = update(_CLAIMS).where(
    _CLAIMS.c.id == bindparam("b_hold"), _CLAIMS.c.shop_id == bindparam("b_shop"),
    _CLAIMS.c.order_id.is_(None), _CLAIMS.c.status == HELD)


def _book_new_line(conn: Connection, shop: ShopFacts, event: OrderEvent, line: LineItem,
                   paid: bool, now: datetime) -> bool:
    """Book a line of an order this delivery created from its live hold, in Core: what
    :func:`_decide` does for such a line (``new``, not ``careful``) without loading ORM
    objects -- the hold locked and read with its service, the hold turned into the
    booking in one UPDATE (as :func:`_book_live_hold` does it: the booking takes
    nothing the hold did not hold), then, paid, its outbox rows and reminders
    (:func:`after_confirm`). False, having written nothing, for any line that is not
    simply that (no hold or not this shop's, taken, another product, its start passed,
    not live, a session not the one it names, units beyond its seats, the shop
    uninstalled): :func:`_decide` then decides it."""
    if not shop.installed or not line.hold_id:
        return False
    hold = conn.execute(_HOLD_ROW, {"hold": line.hold_id}).first()
    if hold is None or hold.shop_id != shop.id or hold.order_id is not None \
            or hold.status != HELD or hold.service is None \
            or not _sells_ids(hold.variant_id, hold.product_id, line) \
            or hold.start_at <= now or hold.expires_at is None or hold.expires_at <= now \
            or hold.session_key != session_key(hold.expert_id, hold.service_id,
                                               hold.start_at):
        return False
    seats = max(1, int(hold.seats or 1))  # hold_seats
    if line.quantity > seats:
        return False  # the extra units' refund entry: the general path
    status: dict[str, Any] = confirmed_changes(now) if paid else {
        "status": PENDING, "updated_at": now,
        "expires_at": now + timedelta(hours=pending_hours_of(
            shop.pending_hold_hours if shop.settings is not None else None))}
    changes: dict[str, Any] = {
        "order_id": event.order_id, "line_item_id": line.id,
        "customer_id": event.customer_id, "customer_name": event.customer_name,
        "customer_email": event.customer_email, "line_price": str(line.price),
        "line_quantity": line.quantity, "currency": event.currency, **status}
    if hold.seats != line.quantity:
        changes["seats"] = line.quantity  # fewer units than the hold's seats
    outbox: list[dict[str, Any]] = []
    reminders: list[dict[str, Any]] = []
    if paid:
        # after_confirm: the confirmation work, a tag for a shop on Shopify, reminders.
        outbox.append({"shop_id": shop.id, "booking_id": hold.id, "kind": "booking.confirmed",
                       "payload": {"sequence": hold.sequence}, "status": "pending",
                       "attempts": 0, "available_at": now, "created_at": now})
        if shop.access_token:
            outbox.append({**outbox[0], "kind": shopify_actions.TAG_KIND,
                           "payload": {"order_id": event.order_id}})
        offsets = shop.reminders if shop.settings is not None else DEFAULT_REMINDERS
        reminders = [{"shop_id": shop.id, "booking_id": hold.id, "offset_minutes": offset,
                      "due_at": due, "status": state, "attempts": 0}
                     for offset, due, state in reminders_of(offsets, hold.start_at, now)]
    _write_booking(conn, hold.id, changes, outbox, reminders)
    return True


_OUTBOX_COLUMNS = ("shop_id", "booking_id", "kind", "payload", "status", "attempts",
                   "available_at", "created_at")
# Every column without a server default, as given: a CTE's INSERT gets no Core defaults.
_REMINDER_COLUMNS = ("shop_id", "booking_id", "offset_minutes", "due_at", "status",
                     "attempts")


@functools.lru_cache(maxsize=64)
def _booking_statement(dialect: str, changes: tuple[str, ...], outbox: int, reminders: int
                       ) -> tuple[Any, ...]:
    """The statements that write a booking: the hold's UPDATE setting ``changes``, then
    ``outbox`` outbox rows and ``reminders`` reminder rows (multi-row INSERTs, their
    parameters named ``o<i>_<column>`` / ``r<i>_<column>``). On PostgreSQL one statement
    (the UPDATE and the outbox INSERT as data-modifying CTEs, which run to completion
    whether or not anything reads them); on SQLite, which has none, up to three."""
    book = update(_CLAIMS).where(_CLAIMS.c.id == bindparam("b_hold")).values(
        {name: bindparam(f"b_{name}", type_=_CLAIMS.c[name].type) for name in changes})
    inserts = [_rows_insert(cast(Table, OutboxItem.__table__), _OUTBOX_COLUMNS, "o", outbox),
               _rows_insert(cast(Table, Reminder.__table__), _REMINDER_COLUMNS, "r",
                            reminders)]
    parts = [book, *(i for i in inserts if i is not None)]
    if dialect != "postgresql":
        return tuple(parts)
    last = parts[-1]
    for n, part in enumerate(parts[:-1]):
        last = last.add_cte(part.cte(f"write_{n}"))
    return (last,)


def _rows_insert(table: Table, columns: tuple[str, ...], prefix: str, rows: int) -> Any:
    """``INSERT INTO table (columns) SELECT <row 0> UNION ALL SELECT <row 1> ...``: not a
    multi-row VALUES, which SQLAlchemy cannot cache (it compiled the whole booking
    statement again on every delivery: two thirds of a first delivery's CPU)."""
    if not rows:
        return None
    selects = [select(*[bindparam(f"{prefix}{i}_{name}", type_=table.c[name].type)
                        for name in columns]) for i in range(rows)]
    return insert_into(table).from_select(
        list(columns), selects[0] if rows == 1 else union_all(*selects))


def _write_booking(conn: Connection, hold_id: str, changes: dict[str, Any],
                   outbox: list[dict[str, Any]], reminders: list[dict[str, Any]]) -> None:
    """The hold turned into its booking (one UPDATE of the columns ``changes`` names)
    and the rows that follow it written (:func:`_booking_statement`)."""
    params: dict[str, Any] = {"b_hold": hold_id}
    params.update({f"b_{name}": value for name, value in changes.items()})
    for prefix, rows in (("o", outbox), ("r", reminders)):
        for i, row in enumerate(rows):
            params.update({f"{prefix}{i}_{name}": value for name, value in row.items()})
    for statement in _booking_statement(conn.dialect.name, tuple(changes), len(outbox),
                                        len(reminders)):
        conn.execute(statement, params)


def apply_order(session: Session, shop: ShopFacts, event: OrderEvent, now: datetime, *,
                careful: bool = False) -> str:
    """Apply one order delivery; returns the order's state afterwards. ``careful``: take
    the general path for every line (see :func:`_decide`).

    A new order (the common case: one delivery per order gets there first) is written
    in Core (:func:`_book_new_line`); an existing one, and any line that is not a live
    hold simply booked, go through the ORM path, which loads the shop and the order."""
    if careful:
        return _apply(session, _shop_of(session, shop), event, now, careful=True)
    conn = session.connection()
    created = conn.execute(_NEW_ORDER[conn.dialect.name], {
        "shop_id": shop.id, "order_id": event.order_id, "state": event.state,
        "currency": event.currency, "last_event_at": event.event_at, "created_at": now,
        "updated_at": now}).first()
    if created is None:
        # It exists (a concurrent delivery creating it was waited for): moved forward.
        orm_shop = _shop_of(session, shop)
        moved = move_forward(session, shop.id, event, now)
        return _decide_all(session, orm_shop, moved, event, now, new=False, careful=False)
    if event.state == "cancelled":
        _cancel_order(session, shop.id, event, now, new=True)
        return event.state
    paid = event.state == "paid"
    orm: tuple[Shop, Order] | None = None
    for line in event.lines:
        if _book_new_line(conn, shop, event, line, paid, now):
            continue
        if orm is None:
            order = session.get(Order, created.id)
            assert order is not None  # inserted just now
            orm = (_shop_of(session, shop), order)
        # careful: a live hold is never booked here without a savepoint (the fast path
        # declined it), so nothing is left unflushed between the Core statements.
        _decide(session, orm[0], orm[1], event, line, paid, now, new=True, careful=True)
    session.flush()
    return event.state


def _shop_of(session: Session, shop: ShopFacts) -> Shop:
    """The ORM row of a shop whose row this transaction has locked already."""
    found = session.get(Shop, shop.id)
    assert found is not None  # locked: it cannot have been deleted
    return found


def _apply(session: Session, shop: Shop, event: OrderEvent, now: datetime, *,
           careful: bool) -> str:
    """The general path of :func:`apply_order`: the ORM throughout."""
    order, new = open_order(session, shop.id, event, now)
    return _decide_all(session, shop, order, event, now, new=new, careful=careful)


def _decide_all(session: Session, shop: Shop, order: Order, event: OrderEvent,
                now: datetime, *, new: bool, careful: bool) -> str:
    if order.state == "cancelled":
        _cancel_order(session, shop.id, event, now, new=new)
    else:
        paid = order.state == "paid"
        for line in event.lines:
            _decide(session, shop, order, event, line, paid, now, new=new, careful=careful)
    # Refund entries written while the order was unpaid wait for the payment; a cancelled
    # order's are settled by Shopify's cancellation (engine.services.shopify_actions).
    # An order this delivery created has none from before: what it wrote now was
    # written knowing the order's state.
    if not new:
        shopify_actions.settle_waiting_refunds(session, shop, order, now)
    session.flush()
    return order.state
