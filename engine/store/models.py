"""The schema. Every tenant-owned row carries ``shop_id``; queries always filter on it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.store.base import ID, NAMING, Base  # noqa: F401  (re-exported)


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    # AES-256-GCM ciphertext (engine.crypto), bound to this row; never the plain token.
    access_token: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str | None] = mapped_column(Text)
    installed: Mapped[bool] = mapped_column(Boolean, default=True)
    installed_at: Mapped[datetime]
    uninstalled_at: Mapped[datetime | None]
    # Expiring offline tokens (engine/services/install.py); None: a non-expiring token.
    access_token_expires_at: Mapped[datetime | None]
    # AES-256-GCM ciphertext like access_token; single-use, replaced on every refresh.
    refresh_token: Mapped[str | None] = mapped_column(Text)
    refresh_token_expires_at: Mapped[datetime | None]
    # Set when the Shopify connection needs the merchant to authorize the app again.
    auth_error: Mapped[str | None] = mapped_column(Text)
    auth_error_at: Mapped[datetime | None]
    # The refresh lease: who is refreshing the token, until when (a conditional update).
    token_lease: Mapped[str | None] = mapped_column(String(32))
    token_lease_until: Mapped[datetime | None]


class ShopSettings(Base):
    __tablename__ = "shop_settings"

    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"),
                                         primary_key=True)
    calendar_provider: Mapped[str] = mapped_column(String(64), default="local")
    video_provider: Mapped[str] = mapped_column(String(64), default="none")
    mail_provider: Mapped[str] = mapped_column(String(64), default="outbox")
    reminders: Mapped[list[Any]] = mapped_column(JSON, default=lambda: [1440, 60])
    # Refund a line item that cannot be honoured through Shopify (refundCreate) as well
    # as logging it; off by default: the merchant decides.
    auto_refund: Mapped[bool] = mapped_column(Boolean, default=False)
    # How long an unpaid (pending) booking keeps its slot, in whole hours (1-720; migration
    # 0007). Applies to pending bookings made after a change: each carries its own
    # deadline in claims.expires_at.
    pending_hold_hours: Mapped[int] = mapped_column(Integer, default=48, server_default="48")
    # What a customer may do from the manage link (migration 0013; CONTRACT "Customers
    # manage their own bookings"), and whether experts are mailed about their bookings.
    customer_cancel: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    customer_reschedule: Mapped[bool] = mapped_column(Boolean, default=True,
                                                      server_default="1")
    cancel_notice_minutes: Mapped[int] = mapped_column(Integer, default=1440,
                                                       server_default="1440")
    reschedule_notice_minutes: Mapped[int] = mapped_column(Integer, default=1440,
                                                           server_default="1440")
    max_reschedules: Mapped[int] = mapped_column(Integer, default=2, server_default="2")
    notify_experts: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")


class Service(Base):
    __tablename__ = "services"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(255))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    interval_minutes: Mapped[int | None] = mapped_column(Integer)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=0)
    max_days_ahead: Mapped[int] = mapped_column(Integer, default=60)
    product_id: Mapped[str | None] = mapped_column(String(128))
    variant_id: Mapped[str | None] = mapped_column(String(128))
    # Capacity (migration 0013): customers per session; {"day"|"week"|"month": n} caps of
    # this service's sessions per expert; how "any expert" assigns; intake questions.
    seats: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    assignment: Mapped[str] = mapped_column(String(16), default="least_booked",
                                            server_default="least_booked")
    questions: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime]
    # Soft delete: bookings keep pointing at a deleted service.
    deleted_at: Mapped[datetime | None]


class Expert(Base):
    __tablename__ = "experts"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    # None: follows the shop's timezone, even when the shop's changes.
    timezone: Mapped[str | None] = mapped_column(String(64))
    # Migration 0013: caps of all the expert's sessions, assignment priority and weight,
    # and what the storefront shows of the expert.
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=50, server_default="50")
    weight: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    photo_url: Mapped[str | None] = mapped_column(Text)
    bio: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class ExpertService(Base):
    __tablename__ = "expert_services"

    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"),
                                           primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"),
                                            primary_key=True, index=True)


class WeeklyHours(Base):
    """One wall-clock window of a weekday, in the expert's timezone. 1440 = "24:00"."""

    __tablename__ = "weekly_hours"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"),
                                           index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)


class DateOverride(Base):
    """The windows of one local date, replacing that weekday's; ``[]`` closes the day."""

    __tablename__ = "date_overrides"
    __table_args__ = (UniqueConstraint("expert_id", "date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"))
    date: Mapped[date] = mapped_column(Date)
    windows: Mapped[list[Any]] = mapped_column(JSON)  # [[start_minute, end_minute], ...]




# --------------------------------------------------------------------------- claims

HELD, EXPIRED, RELEASED = "held", "expired", "released"
PENDING, CONFIRMED, CANCELLED = "pending", "confirmed", "cancelled"
LIVE_STATUSES = (HELD, PENDING, CONFIRMED)
BOOKING_STATUSES = (PENDING, CONFIRMED, CANCELLED)
# A pending booking holds its time until its ``expires_at`` (the shop's pending_hold_hours
# after it was made); then it lapses: it is marked ``expired`` like a stale hold, keeps its
# order and line item ids, and only a later paid delivery can book it again.
# The predicate of "this claim holds time": the exclusion constraint (PostgreSQL) and the
# overlap trigger (SQLite) use exactly this. A held row past its expires_at is still
# "live" to the database until it is marked expired, which every writer does for the
# expert's stale holds in the same transaction before it claims (engine.services.claims).
LIVE_SQL = "status IN ('held', 'pending', 'confirmed')"


class Claim(Base):
    """A hold or a booking on an expert's time. ``[claim_start, claim_end)`` is the
    meeting plus the service's buffers; two live claims of one expert never overlap."""

    __tablename__ = "claims"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime]
    claim_start: Mapped[datetime]
    claim_end: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None]
    visitor: Mapped[str | None] = mapped_column(String(128))
    customer_tz: Mapped[str | None] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(64))
    line_item_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    customer_name: Mapped[str | None] = mapped_column(String(255))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    redacted_at: Mapped[datetime | None]
    meeting_url: Mapped[str | None] = mapped_column(Text)
    # Provider references (calendar event id, meeting id), written by the worker.
    external: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # What the booked order line paid (migration 0007): the unit price as a decimal string,
    # the units this booking took (the hold's seats at most) and the order's currency. A
    # refund of the booking (merchant or customer cancel) is line_price x line_quantity.
    line_price: Mapped[str | None] = mapped_column(String(32))
    line_quantity: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str | None] = mapped_column(String(8))
    # Who cancelled a booking: merchant | customer | order (orders/cancelled).
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    # Migration 0013. The session this claim takes seats of ("expert|service|epoch"; set
    # by engine.services.capacity, never by hand) and how many; live claims of one
    # session may overlap each other, nothing else.
    session_key: Mapped[str] = mapped_column(String(96), default="", server_default="")
    seats: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Intake answers {question id: text}; erased by customers/redact.
    answers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # sha256 hex of the manage link's token (the token itself is never stored).
    manage_token_hash: Mapped[str | None] = mapped_column(String(64))
    reschedules: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Migration 0014: when the merchant marked this past booking a no-show (status stays).
    no_show_at: Mapped[datetime | None]


class ClaimSession(Base):
    """One session (expert, service, start) and its seats. ``seats_used`` is kept by the
    database's triggers on ``claims`` (the sum of its live claims' seats) and refused
    past ``seats_max`` by a check constraint (migration 0013, docs/bookings.md)."""

    __tablename__ = "claim_sessions"

    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"))
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    start_at: Mapped[datetime]
    seats_max: Mapped[int] = mapped_column(Integer)
    seats_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The session's local day, ISO week and month in the expert's timezone.
    day_key: Mapped[str] = mapped_column(String(10))
    week_key: Mapped[str] = mapped_column(String(8))
    month_key: Mapped[str] = mapped_column(String(7))
    created_at: Mapped[datetime]


class CapacityCounter(Base):
    """Sessions of one expert in one period (``D2026-12-01``, ``W2026-W49``,
    ``M2026-12``), for one service (``scope`` = its id) or all (``*``). ``used`` is kept
    by the database's trigger on ``claim_sessions``; ``cap`` (None: no limit) is refused
    by a check constraint."""

    __tablename__ = "capacity_counters"

    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"),
                                           primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(12), primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cap: Mapped[int | None] = mapped_column(Integer)


class WaitlistEntry(Base):
    """Someone waiting for a free time of a service on a date (shop timezone)."""

    __tablename__ = "waitlist"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    expert_id: Mapped[str | None] = mapped_column(String(32))  # None: any expert
    date: Mapped[date] = mapped_column(Date)
    email: Mapped[str | None] = mapped_column(String(320))  # None once redacted
    visitor: Mapped[str | None] = mapped_column(String(128))
    customer_tz: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="waiting",
                                        server_default="waiting")
    created_at: Mapped[datetime]
    notified_at: Mapped[datetime | None]


class Order(Base):
    """What consultbook knows of one Shopify order: the furthest state any delivery
    reported. States only move forward (none < pending < paid < cancelled), which is
    what makes deliveries in any order converge."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("shop_id", "order_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    order_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str | None] = mapped_column(String(8))
    # The newest X-Shopify-Triggered-At / updated_at seen for this order.
    last_event_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


# Refund-log entry kinds (migration 0007). A line item has at most one entry of each kind:
# ``line``   the line was not honoured at all (slot_unavailable, hold_unknown,
#            wrong_product, slot_passed, shop_uninstalled); this decides the line;
# ``extra``  units beyond the hold's seats (extra_quantity); written with the booking;
# ``cancel`` a paid booking cancelled afterwards (merchant_cancelled, customer_cancelled).
REFUND_LINE, REFUND_EXTRA, REFUND_CANCEL = "line", "extra", "cancel"


class Refund(Base):
    """The refund log: one entry per line item and kind (see the kinds above)."""

    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("shop_id", "order_id", "line_item_id", "kind"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    order_id: Mapped[str] = mapped_column(String(64))
    line_item_id: Mapped[str] = mapped_column(String(64))
    hold_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    amount: Mapped[str] = mapped_column(String(32))
    currency: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime]
    quantity: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default=REFUND_LINE, server_default="line")
    # With auto-refund on: awaiting_payment (the order is not paid yet) -> pending (queued)
    # -> refunded | failed; skipped when the order was cancelled (Shopify's cancellation
    # settles the money). None: auto-refund was off, the merchant refunds by hand.
    shopify_status: Mapped[str | None] = mapped_column(String(16))
    shopify_refund_id: Mapped[str | None] = mapped_column(String(128))
    shopify_error: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """Seen ``X-Shopify-Webhook-Id`` values (no bodies: nothing personal is kept here)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("webhook_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(128))
    shop_domain: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(index=True)


class OutboxItem(Base):
    """External work recorded in the transaction that caused it; the worker relays it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    booking_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    # Who holds locked_until: a Celery task id (a redelivered task takes it back at once)
    # or an embedded worker's token (migration 0005, engine/services/outbox.py).
    lease_owner: Mapped[str | None] = mapped_column(String(64))


class OutboxStep(Base):
    """One step of one outbox item, recorded right after it succeeded; a mail step is
    inserted as ``sending`` before the message goes out, so it is never sent twice."""

    __tablename__ = "outbox_steps"

    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"),
                                           primary_key=True)
    step: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # sending | done | unknown | skipped
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Reminder(Base):
    """One reminder of one booking; sent at most once (claimed by a conditional update)."""

    __tablename__ = "reminders"
    __table_args__ = (UniqueConstraint("booking_id", "offset_minutes"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("claims.id", ondelete="CASCADE"))
    offset_minutes: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Transient send failures so far (migration 0005); a few put the reminder back.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PrivacyRequest(Base):
    """A GDPR webhook (customers/data_request, customers/redact) as the merchant sees it."""

    __tablename__ = "privacy_requests"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    topic: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    # Kept for data requests (the merchant must answer the customer); erased on redact.
    customer_email: Mapped[str | None] = mapped_column(String(320))
    orders: Mapped[list[Any]] = mapped_column(JSON, default=list)
    received_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


# Every engine table on Base.metadata (Alembic's target, tests' create_all): the other
# model modules build on engine.store.base, never on this module, so this is no cycle.
from engine.store import providers_models as _providers_models  # noqa: E402,F401

