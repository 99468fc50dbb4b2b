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
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.services import privacy
from engine.services.orders import BadPayload, apply_order, parse_order
from engine.store import Database
from engine.store.models import Shop, WebhookDelivery

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


_SEEN = select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == bindparam("id")).limit(1)


def seen(db: Database, topic: str, webhook_id: str | None) -> bool:
    """Whether a delivery is a redelivery of one already recorded: one indexed lookup
    (autocommit on PostgreSQL: no transaction), made before the body is parsed, so a
    duplicate costs next to nothing. Only an answer of True is final: a delivery not
    seen here still goes through :func:`handle`, whose insert decides a race between
    two concurrent deliveries of one id. A topic not handled is never "seen" (it is
    answered ``ignored`` and never recorded)."""
    if not webhook_id or topic not in TOPICS:
        return False
    with db.lookup() as session:
        return session.execute(_SEEN, {"id": webhook_id[:128]}).first() is not None


def _first_time(session: Session, d: Delivery, now: datetime) -> bool:
    """Record the webhook id; False if it was seen before (or is being processed by a
    concurrent request, which then decides)."""
    if not d.webhook_id:
        return True
    values = {"webhook_id": d.webhook_id[:128], "shop_domain": d.shop_domain[:255],
              "topic": d.topic[:64], "received_at": now}
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(WebhookDelivery).values(**values).on_conflict_do_nothing(
        index_elements=["webhook_id"]).returning(WebhookDelivery.id)
    return session.execute(stmt).first() is not None


def handle(db: Database, clock: Clock, d: Delivery, *, outbox_dir: str | None = None
           ) -> Outcome:
    now = clock.now()
    if d.topic not in TOPICS:
        return Outcome("ignored", f"topic {d.topic!r} is not handled")
    with db.write() as session:
        if not _first_time(session, d, now):
            return Outcome("duplicate")
        # The shop row is locked against deletion for the rest of the transaction (FOR
        # KEY SHARE on PostgreSQL: deliveries of one shop still run side by side, only a
        # concurrent shop/redact waits; SQLite's BEGIN IMMEDIATE serializes anyway). So a
        # delivery either sees the shop and finishes its writes before shop/redact
        # deletes it, or does not see it at all -- never a write against a row that
        # vanished underneath (StaleDataError, a foreign-key violation: a 500).
        # shop/redact itself takes the row exclusively (FOR UPDATE), so two of them
        # queue instead of deadlocking on each other's share locks; the second then
        # finds no shop.
        lock = (select(Shop).where(Shop.domain == d.shop_domain)
                .with_for_update(key_share=d.topic != "shop/redact"))
        shop = session.scalar(lock)
        if shop is None:
            # Nothing of this shop is stored (never installed, or already redacted).
            log.info("webhook %s for unknown shop %s ignored", d.topic, d.shop_domain)
            return Outcome("ignored", "unknown shop")
        if d.topic in ORDER_TOPICS:
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
            state = apply_order(session, shop, event, now)
            return Outcome("processed", state)
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
