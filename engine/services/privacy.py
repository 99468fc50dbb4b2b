"""Privacy and lifecycle topics: app/uninstalled, customers/data_request,
customers/redact, shop/redact — and the merchant's view of data requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, null, or_, select, update
from sqlalchemy.orm import Session

from engine.errors import NotFound
from engine.services.orders import _clean, _id
from engine.store import Database, new_id
from engine.store.models import Claim, PrivacyRequest, Shop, WaitlistEntry


def uninstall(session: Session, shop: Shop, now: datetime) -> None:
    """Mark the shop uninstalled and drop its tokens (admin: 403, storefront: 404).

    Bulk statements, not a flush of the loaded row: should the row be gone (a
    concurrent ``shop/redact`` deleted it), they change nothing instead of raising
    StaleDataError -- uninstalling a deleted shop is done already."""
    from engine.services.install import forget_tokens

    session.execute(update(Shop).where(Shop.id == shop.id)
                    .values(installed=False, uninstalled_at=now)
                    .execution_options(synchronize_session=False))
    forget_tokens(session, shop.id)
    session.expire(shop)


def _customer(payload: Any) -> tuple[str | None, str | None, list[str]]:
    if not isinstance(payload, dict):
        return None, None, []
    raw_customer = payload.get("customer")
    customer: dict[str, Any] = raw_customer if isinstance(raw_customer, dict) else {}
    orders: list[str] = []
    for key in ("orders_requested", "orders_to_redact"):
        raw = payload.get(key)
        if isinstance(raw, list):
            orders.extend(o for o in (_id(x) for x in raw[:1000]) if o)
    email = _clean(customer.get("email"), 320)
    return _id(customer.get("id")), email.lower() if email else None, orders


def _matching(shop_id: str, customer_id: str | None, email: str | None,
              orders: list[str]) -> Any:
    terms = []
    if customer_id:
        terms.append(Claim.customer_id == customer_id)
    if email:
        terms.append(func.lower(Claim.customer_email) == email)
    if orders:
        terms.append(Claim.order_id.in_(orders))
    if not terms:
        return None
    return (Claim.shop_id == shop_id) & or_(*terms)


def data_request(session: Session, shop: Shop, payload: Any, now: datetime) -> None:
    customer_id, email, orders = _customer(payload)
    session.add(PrivacyRequest(id=new_id("prv"), shop_id=shop.id,
                               topic="customers/data_request", customer_id=customer_id,
                               customer_email=email, orders=orders, received_at=now))


def redact_customer(session: Session, shop: Shop, payload: Any, now: datetime) -> None:
    """Erase what the customer told us, in one place: their bookings' name, email,
    intake answers and manage-link token (the link stops working; the bookings keep
    their slots, seats and counters: no capacity column changes), and their waitlist
    entries' email (the entry stays, unreachable, so nothing is sent to them)."""
    customer_id, email, orders = _customer(payload)
    where = _matching(shop.id, customer_id, email, orders)
    if where is not None:
        # null(): SQL NULL, not the JSON value null, for the JSON column.
        session.execute(update(Claim).where(where)
                        .values(customer_name=None, customer_email=None, answers=null(),
                                manage_token_hash=None, redacted_at=now)
                        .execution_options(synchronize_session=False))
    if email:
        session.execute(update(WaitlistEntry)
                        .where(WaitlistEntry.shop_id == shop.id,
                               func.lower(WaitlistEntry.email) == email)
                        .values(email=None)
                        .execution_options(synchronize_session=False))
    # Earlier data requests of this customer held the email: erase it there too.
    terms = []
    if customer_id:
        terms.append(PrivacyRequest.customer_id == customer_id)
    if email:
        terms.append(PrivacyRequest.customer_email == email)
    if terms:
        session.execute(update(PrivacyRequest)
                        .where(PrivacyRequest.shop_id == shop.id, or_(*terms))
                        .values(customer_email=None))
    session.add(PrivacyRequest(id=new_id("prv"), shop_id=shop.id, topic="customers/redact",
                               customer_id=customer_id, customer_email=None, orders=orders,
                               received_at=now, completed_at=now))


def scrub_outbox(outbox_dir: str | None, payload: Any) -> int:
    """Delete the outbox mailer's copies of mail to the redacted customer (``.eml`` files
    mentioning their address): the outbox is a log, and the customer's data leaves it too.
    Returns how many files were removed."""
    from pathlib import Path

    _, email, _ = _customer(payload)
    if not outbox_dir or not email:
        return 0
    folder = Path(outbox_dir)
    if not folder.is_dir():
        return 0
    needle = email.encode().lower()
    removed = 0
    for path in folder.glob("*.eml"):
        try:
            if needle in path.read_bytes().lower():
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def redact_shop(session: Session, shop: Shop) -> None:
    """Delete everything stored for the shop (rows cascade from the shop). A bulk
    DELETE: a row already gone (a concurrent ``shop/redact``) deletes nothing, no error."""
    session.execute(delete(Shop).where(Shop.id == shop.id)
                    .execution_options(synchronize_session=False))


# --------------------------------------------------------------------------- merchant view


def _render_request(r: PrivacyRequest) -> dict[str, Any]:
    return {"id": r.id, "topic": r.topic, "customer_id": r.customer_id,
            "customer_email": r.customer_email, "orders": list(r.orders or []),
            "received_at": r.received_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "completed_at": r.completed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            if r.completed_at else None}


def list_requests(db: Database, shop_id: str) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = session.scalars(select(PrivacyRequest).where(PrivacyRequest.shop_id == shop_id)
                               .order_by(PrivacyRequest.received_at.desc()))
        return [_render_request(r) for r in rows]


def export_request(db: Database, shop_id: str, request_id: str) -> dict[str, Any]:
    """The customer's data for a data request: the request and every matching booking."""
    from engine.services.bookings import render_booking

    with db.read() as session:
        req = session.get(PrivacyRequest, request_id)
        if req is None or req.shop_id != shop_id or req.topic != "customers/data_request":
            raise NotFound(f"no data request {request_id!r}")
        where = _matching(shop_id, req.customer_id, req.customer_email, list(req.orders or []))
        bookings = [] if where is None else [
            render_booking(session, c) for c in session.scalars(
                select(Claim).where(where, Claim.order_id.is_not(None))
                .order_by(Claim.start_at))]
        return {"request": _render_request(req), "bookings": bookings}
