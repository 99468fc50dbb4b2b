"""Provider plugins: account connections, OAuth states, the local calendar (busy blocks,
ICS feeds, booking events), meeting and mail idempotency, the free/busy cache and health.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(32)


def _shop_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                   name=op.f(f"fk_{table}_shop_id_shops"))


def upgrade() -> None:
    op.create_table(
        "provider_connections",
        sa.Column("id", ID, nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("account", sa.String(320), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("connected_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("broken_at", UTCDateTime(), nullable=True),
        _shop_fk("provider_connections"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_connections")),
        sa.UniqueConstraint("shop_id", "provider",
                            name=op.f("uq_provider_connections_shop_id_provider")),
    )
    op.create_table(
        "provider_oauth_states",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("flow", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        _shop_fk("provider_oauth_states"),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_provider_oauth_states")),
    )
    op.create_table(
        "ics_feeds",
        sa.Column("id", ID, nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("expert_id", ID, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("last_fetched_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _shop_fk("ics_feeds"),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], ondelete="CASCADE",
                                name=op.f("fk_ics_feeds_expert_id_experts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ics_feeds")),
    )
    op.create_index(op.f("ix_ics_feeds_shop_id"), "ics_feeds", ["shop_id"])
    op.create_table(
        "local_busy_blocks",
        sa.Column("id", ID, nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("expert_id", ID, nullable=False),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("summary", sa.String(255), nullable=True),
        sa.Column("feed_id", ID, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _shop_fk("local_busy_blocks"),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], ondelete="CASCADE",
                                name=op.f("fk_local_busy_blocks_expert_id_experts")),
        sa.ForeignKeyConstraint(["feed_id"], ["ics_feeds.id"], ondelete="CASCADE",
                                name=op.f("fk_local_busy_blocks_feed_id_ics_feeds")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_busy_blocks")),
    )
    op.create_index("ix_local_busy_blocks_expert_id_start", "local_busy_blocks",
                    ["expert_id", "start"])
    op.create_index(op.f("ix_local_busy_blocks_feed_id"), "local_busy_blocks", ["feed_id"])
    op.create_table(
        "local_calendar_events",
        sa.Column("booking_id", sa.String(64), nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("expert_id", sa.String(64), nullable=False),
        sa.Column("summary", sa.String(512), nullable=False),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("meeting_url", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _shop_fk("local_calendar_events"),
        sa.PrimaryKeyConstraint("booking_id", name=op.f("pk_local_calendar_events")),
    )
    op.create_index(op.f("ix_local_calendar_events_shop_id"), "local_calendar_events",
                    ["shop_id"])
    op.create_table(
        "provider_meetings",
        sa.Column("booking_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("meeting_id", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        _shop_fk("provider_meetings"),
        sa.PrimaryKeyConstraint("booking_id", "provider", name=op.f("pk_provider_meetings")),
    )
    op.create_index(op.f("ix_provider_meetings_shop_id"), "provider_meetings", ["shop_id"])
    op.create_table(
        "sent_messages",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        _shop_fk("sent_messages"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sent_messages")),
    )
    op.create_index(op.f("ix_sent_messages_shop_id"), "sent_messages", ["shop_id"])
    op.create_table(
        "busy_cache",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("intervals", sa.JSON(), nullable=False),
        _shop_fk("busy_cache"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_busy_cache")),
    )
    op.create_index(op.f("ix_busy_cache_shop_id"), "busy_cache", ["shop_id"])
    op.create_index(op.f("ix_busy_cache_expires_at"), "busy_cache", ["expires_at"])
    op.create_table(
        "freebusy_health",
        sa.Column("expert_id", ID, nullable=False),
        sa.Column("shop_id", ID, nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _shop_fk("freebusy_health"),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], ondelete="CASCADE",
                                name=op.f("fk_freebusy_health_expert_id_experts")),
        sa.PrimaryKeyConstraint("expert_id", name=op.f("pk_freebusy_health")),
    )
    op.create_index(op.f("ix_freebusy_health_shop_id"), "freebusy_health", ["shop_id"])


def downgrade() -> None:
    for table in ("freebusy_health", "busy_cache", "sent_messages", "provider_meetings",
                  "local_calendar_events", "local_busy_blocks", "ics_feeds",
                  "provider_oauth_states", "provider_connections"):
        op.drop_table(table)
