"""The local calendar's tables, on the plugin's own branch.

Databases migrated before the local calendar became a plugin got these tables from the
engine's revision 0003 (which stays, as history). This first revision of the plugin's
branch therefore *adopts* them: it depends on 0003 and creates only the tables that do
not exist yet -- none on any database that ran 0003, all of them on a database whose
engine history no longer creates them. Its downgrade drops nothing it did not create
(the engine's 0003 downgrade owns tables made there).

Revision ID: calendar_local_0001
Revises: (branch root)
Depends on: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.providers.sql import UTCDateTime

revision = "calendar_local_0001"
down_revision = None
branch_labels = ("calendar_local",)
depends_on = "0003"

ID = sa.String(32)


def _shop_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                   name=op.f(f"fk_{table}_shop_id_shops"))


def _missing() -> set[str]:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    return {"ics_feeds", "local_busy_blocks", "local_calendar_events"} - existing


def upgrade() -> None:
    missing = _missing()
    if "ics_feeds" in missing:
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
    if "local_busy_blocks" in missing:
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
        op.create_index(op.f("ix_local_busy_blocks_feed_id"), "local_busy_blocks",
                        ["feed_id"])
    if "local_calendar_events" in missing:
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


def downgrade() -> None:
    # Adopted tables stay: the engine's revision 0003 created them and drops them.
    pass
