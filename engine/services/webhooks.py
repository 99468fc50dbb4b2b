"""Shopify webhook intake: dedup on ``X-Shopify-Webhook-Id``, then one transaction.

The HMAC is verified by the caller (``web/webhooks.py``) over the raw body before
anything here runs. Everything a delivery changes — the delivery record, the order, its
bookings, refunds, outbox rows — commits together or not at all, so a crash mid-way
leaves Shopify's retry to do the whole thing again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, outerjoin, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.services import privacy
from engine.services.orders import SHOP_FACTS, BadPayload, ShopFacts, apply_order, parse_order
from engine.store import Database
from engine.store.models import Shop, ShopSettings, WebhookDelivery

log = logging.getLogger("consultbook.webhooks")

ORDER_TOPICS = frozenset({"orders/create", "orders/paid", "orders/cancelled"})
TOPICS = ORDER_TOPICS | {"app/uninstalled", "customers/data_request", "customers/redact",
                         "shop/redact"}


@dataclass(frozen=True)
class Delivery:
    topic: str
    shop_domain: str
    webhook_id: str | None
    triggered_at: datetime | None
    payload: Any


@dataclass(frozen=True)
class Outcome:
    status: str  # processed | duplicate | ignored
    detail: str = ""


_DELIVERIES = cast(Table, WebhookDelivery.__table__)
_SEEN = select(_DELIVERIES.c.id).where(_DELIVERIES.c.webhook_id == bindparam("id")).limit(1)


def seen(db: Database, topic: str, webhook_id: str | None) -> bool:
    """Whether a delivery is a redelivery of one already recorded: one indexed lookup
    (:meth:`Database.rows`: autocommit on PostgreSQL, no transaction, no ORM), made
    before the body is parsed, so a duplicate costs next to nothing. Only an answer of
    True is final: a delivery not seen here still goes through :func:`handle`, whose
    insert decides a race between two concurrent deliveries of one id. A topic not
    handled is never "seen" (it is answered ``ignored`` and never recorded)."""
    if not webhook_id or topic not in TOPICS:
        return False
    # Database.rows: one precompiled statement on a pooled connection, no ORM.
    return bool(db.rows(_SEEN, {"id": webhook_id[:128]}))


# The webhook id recorded, unless it was already: built once per dialect.
_RECORD = {
    name: insert(_DELIVERIES)
    .on_conflict_do_nothing(index_elements=["webhook_id"]).returning(_DELIVERIES.c.id)
    for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))}


def _first_time(session: Session, d: Delivery, now: datetime) -> bool:
    """Record the webhook id; False if it was seen before (or is being processed by a
    concurrent request, which then decides)."""
    if not d.webhook_id:
        return True
    conn = session.connection()
    return conn.execute(_RECORD[conn.dialect.name], {
        "webhook_id": d.webhook_id[:128], "shop_domain": d.shop_domain[:255],
        "topic": d.topic[:64], "received_at": now}).first() is not None


# The shop of an order delivery and its settings (orders.ShopFacts), the shop row
# locked FOR KEY SHARE (see _handle_once); Core, no ORM objects.
_SHOPS, _SETTINGS = cast(Table, Shop.__table__), cast(Table, ShopSettings.__table__)
_SHOP_FOR_ORDER = (select(*SHOP_FACTS)
                   .select_from(outerjoin(_SHOPS, _SETTINGS,
                                          _SETTINGS.c.shop_id == _SHOPS.c.id))
                   .where(_SHOPS.c.domain == bindparam("domain"))
                   .with_for_update(read=True, key_share=True, of=_SHOPS))


# How many times a delivery's transaction is run when the database asks for it again.
ATTEMPTS = 3


def _retry(error: DBAPIError) -> bool:
    """A deadlock or a serialization failure (PostgreSQL SQLSTATE 40P01 / 40001): the
    transaction was rolled back and may simply be run again. Deliveries of one shop run
    side by side; two orders naming the same holds in opposite orders can deadlock."""
    return getattr(error.orig, "sqlstate", None) in ("40P01", "40001")


def handle(db: Database, clock: Clock, d: Delivery, *, outbox_dir: str | None = None
           ) -> Outcome:
    """Record and apply one delivery in one transaction. The transaction is run again
    (from the start: it was rolled back) after a deadlock, and once more in ``careful``
    mode (engine.services.orders.apply_order) if the database refused one of its writes
    (an IntegrityError that the fast path for a live hold does not expect)."""
    if d.topic not in TOPICS:
        return Outcome("ignored", f"topic {d.topic!r} is not handled")
    careful = False
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _handle_once(db, clock, d, outbox_dir=outbox_dir, careful=careful)
        except IntegrityError:
            if careful or attempt == ATTEMPTS:
                raise
            log.warning("webhook %s for %s: a write was refused; running it again "
                        "carefully", d.topic, d.shop_domain)
            careful = True
        except DBAPIError as exc:
            if not _retry(exc) or attempt == ATTEMPTS:
                raise
            log.info("webhook %s for %s: %s; running it again", d.topic, d.shop_domain,
                     type(exc.orig).__name__)
    raise AssertionError("unreachable")  # pragma: no cover


def _handle_once(db: Database, clock: Clock, d: Delivery, *, outbox_dir: str | None,
                 careful: bool) -> Outcome:
    now = clock.now()
    with db.write() as session:
        if not _first_time(session, d, now):
            return Outcome("duplicate")
        # The shop row is locked against deletion for the rest of the transaction. An
        # order delivery takes FOR KEY SHARE (SQLAlchemy: read=True with key_share=True;
        # key_share alone would render FOR NO KEY UPDATE, which serialized every delivery
        # of a shop behind the one before it, commit included): deliveries of one shop
        # run side by side, as their foreign keys' checks would let them anyway, and are
        # serialized per order and per hold by those rows' locks (engine.services.orders).
        # So a delivery either sees the shop and finishes its writes before shop/redact
        # deletes it, or does not see it at all -- never a write against a row that
        # vanished underneath (StaleDataError, a foreign-key violation: a 500).
        # The other topics (uninstall, the privacy ones) take the row exclusively (FOR
        # UPDATE): each waits for the order deliveries in flight and they for it, so a
        # redaction never misses a booking written beside it, and two of them queue
        # instead of deadlocking on each other's share locks (the second redact then
        # finds no shop). SQLite's BEGIN IMMEDIATE serializes everything anyway.
        # An order delivery's shop comes with its settings (read by its bookings:
        # reminders, pending hours), one statement for both.
        if d.topic in ORDER_TOPICS:
            row = session.connection().execute(
                _SHOP_FOR_ORDER, {"domain": d.shop_domain}).first()
            if row is None:
                return _unknown_shop(d)
            facts = ShopFacts(*row)
            try:
                event = parse_order(d.topic, d.payload, d.triggered_at)
            except BadPayload as exc:
                log.warning("webhook %s for %s: %s", d.topic, d.shop_domain, exc)
                return Outcome("ignored", str(exc))
            except Exception:
                # parse_order is meant to be total over any JSON document; should it
                # still fail, the delivery is recorded and answered, never a 5xx that
                # Shopify would retry for two days with the same result.
                log.exception("webhook %s for %s: the payload could not be parsed",
                              d.topic, d.shop_domain)
                return Outcome("ignored", "the payload could not be parsed")
            state = apply_order(session, facts, event, now, careful=careful)
            return Outcome("processed", state)
        lock = (select(Shop).where(Shop.domain == d.shop_domain).with_for_update(of=Shop))
        shop = session.scalars(lock).first()
        if shop is None:
            return _unknown_shop(d)
        if d.topic == "app/uninstalled":
            privacy.uninstall(session, shop, now)
        elif d.topic == "customers/data_request":
            privacy.data_request(session, shop, d.payload, now)
        elif d.topic == "customers/redact":
            privacy.redact_customer(session, shop, d.payload, now)
            privacy.scrub_outbox(outbox_dir, d.payload)
        elif d.topic == "shop/redact":
            privacy.redact_shop(session, shop)
        return Outcome("processed")


def _unknown_shop(d: Delivery) -> Outcome:
    # Nothing of this shop is stored (never installed, or already redacted).
    log.info("webhook %s for unknown shop %s ignored", d.topic, d.shop_domain)
    return Outcome("ignored", "unknown shop")
