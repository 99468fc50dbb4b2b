"""Claims (holds and bookings), orders, refunds, webhook deliveries, outbox, reminders,
privacy requests.

Two live claims of one expert never overlap: on PostgreSQL an exclusion constraint over
``tstzrange(claim_start, claim_end, '[)')`` (btree_gist for the ``=`` on expert_id); on
SQLite triggers that abort an insert or update creating such an overlap (writers also
run under ``BEGIN IMMEDIATE``, so the check and the write are one serialized step).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIVE = "status IN ('held', 'pending', 'confirmed')"

SQLITE_OVERLAP = """
CREATE TRIGGER claims_no_overlap_{event} BEFORE {event_sql} ON claims
WHEN NEW.{live} AND EXISTS (
    SELECT 1 FROM claims AS c
    WHERE c.expert_id = NEW.expert_id AND c.id != NEW.id AND c.{live}
      AND c.claim_start < NEW.claim_end AND NEW.claim_start < c.claim_end)
BEGIN
    SELECT RAISE(ABORT, 'claims_no_overlap: two live claims of one expert overlap');
END
"""


def upgrade() -> None:
    op.create_table(
        "claims",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("service_id", sa.String(32), nullable=False),
        sa.Column("expert_id", sa.String(32), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("claim_start", UTCDateTime(), nullable=False),
        sa.Column("claim_end", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("visitor", sa.String(128), nullable=True),
        sa.Column("customer_tz", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("line_item_id", sa.String(64), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("customer_name", sa.String(255), nullable=True),
        sa.Column("customer_email", sa.String(320), nullable=True),
        sa.Column("redacted_at", UTCDateTime(), nullable=True),
        sa.Column("meeting_url", sa.Text(), nullable=True),
        sa.Column("external", sa.JSON(), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("claim_start < claim_end", name=op.f("ck_claims_range")),
        sa.CheckConstraint("claim_start <= start_at AND end_at <= claim_end",
                           name=op.f("ck_claims_meeting_inside")),
        sa.CheckConstraint(
            "status IN ('held', 'expired', 'released', 'pending', 'confirmed', 'cancelled')",
            name=op.f("ck_claims_status")),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_claims_shop_id_shops")),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"], ondelete="CASCADE",
                                name=op.f("fk_claims_service_id_services")),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], ondelete="CASCADE",
                                name=op.f("fk_claims_expert_id_experts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
    )
    op.create_index("ix_claims_shop_id", "claims", ["shop_id"])
    op.create_index("ix_claims_expert_range", "claims", ["expert_id", "claim_start", "claim_end"])
    op.create_index("ix_claims_shop_start", "claims", ["shop_id", "start_at"])
    op.create_index("ix_claims_shop_order", "claims", ["shop_id", "order_id"])
    op.create_index("ix_claims_shop_visitor", "claims", ["shop_id", "visitor"],
                    postgresql_where=sa.text("status = 'held'"),
                    sqlite_where=sa.text("status = 'held'"))
    op.create_index("ix_claims_held_expiry", "claims", ["expires_at"],
                    postgresql_where=sa.text("status = 'held'"),
                    sqlite_where=sa.text("status = 'held'"))

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE claims ADD CONSTRAINT claims_no_overlap EXCLUDE USING gist "
            "(expert_id WITH =, tstzrange(claim_start, claim_end, '[)') WITH &&) "
            f"WHERE ({LIVE})")
    else:
        op.execute(SQLITE_OVERLAP.format(event="insert", event_sql="INSERT", live=LIVE))
        op.execute(SQLITE_OVERLAP.format(
            event="update",
            event_sql="UPDATE OF status, claim_start, claim_end, expert_id", live=LIVE))

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("last_event_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_orders_shop_id_shops")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("shop_id", "order_id", name=op.f("uq_orders_shop_id_order_id")),
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("line_item_id", sa.String(64), nullable=False),
        sa.Column("hold_id", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("amount", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(8), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_refunds_shop_id_shops")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("shop_id", "order_id", "line_item_id",
                            name=op.f("uq_refunds_shop_id_order_id_line_item_id")),
    )
    op.create_index("ix_refunds_shop_id", "refunds", ["shop_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(128), nullable=False),
        sa.Column("shop_domain", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint("webhook_id", name=op.f("uq_webhook_deliveries_webhook_id")),
    )
    op.create_index("ix_webhook_deliveries_received_at", "webhook_deliveries", ["received_at"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("booking_id", sa.String(32), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", UTCDateTime(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_outbox_shop_id_shops")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index("ix_outbox_shop_id", "outbox", ["shop_id"])
    op.create_index("ix_outbox_booking_id", "outbox", ["booking_id"])
    op.create_index("ix_outbox_pending", "outbox", ["available_at"],
                    postgresql_where=sa.text("status = 'pending'"),
                    sqlite_where=sa.text("status = 'pending'"))
    op.create_table(
        "reminders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("booking_id", sa.String(32), nullable=False),
        sa.Column("offset_minutes", sa.Integer(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_reminders_shop_id_shops")),
        sa.ForeignKeyConstraint(["booking_id"], ["claims.id"], ondelete="CASCADE",
                                name=op.f("fk_reminders_booking_id_claims")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reminders")),
        sa.UniqueConstraint("booking_id", "offset_minutes",
                            name=op.f("uq_reminders_booking_id_offset_minutes")),
    )
    op.create_index("ix_reminders_shop_id", "reminders", ["shop_id"])
    # The beat scan reads only what is due: a partial index over pending reminders.
    op.create_index("ix_reminders_due", "reminders", ["due_at"],
                    postgresql_where=sa.text("status = 'pending'"),
                    sqlite_where=sa.text("status = 'pending'"))
    op.create_table(
        "privacy_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("customer_email", sa.String(320), nullable=True),
        sa.Column("orders", sa.JSON(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_privacy_requests_shop_id_shops")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_requests")),
    )
    op.create_index("ix_privacy_requests_shop_id", "privacy_requests", ["shop_id"])


def downgrade() -> None:
    for table in ("privacy_requests", "reminders", "outbox", "webhook_deliveries", "refunds",
                  "orders", "claims"):
        op.drop_table(table)
