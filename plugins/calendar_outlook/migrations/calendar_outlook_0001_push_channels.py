"""The calendar_outlook plugin's own branch: its push-sync table ``calendar_outlook_subscriptions``
(Microsoft Graph subscriptions, one row per expert calendar; see ``engine.providers.push``).

The columns are written out here, not taken from ``channel_columns()``, so that this
revision keeps creating the same table when the live definition changes (a later change
is a later revision). Times are POSIX seconds. The shop foreign key cascades: an erased
shop's channels go with it. ``expert_id`` has no foreign key, as orphan rows (unknown
channels to stop) have none.

Revision ID: calendar_outlook_0001
Revises: (branch root)
Depends on: 0001 (shops)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "calendar_outlook_0001"
down_revision = None
branch_labels = ("calendar_outlook",)
depends_on = "0001"

TABLE = "calendar_outlook_subscriptions"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("shop_id", sa.String(64), nullable=False),
        sa.Column("expert_id", sa.String(64), nullable=False),
        sa.Column("calendar", sa.String(320), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f(f"fk_{TABLE}_shop_id_shops")),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
    )
    op.create_index(op.f(f"ix_{TABLE}_shop_id"), TABLE, ["shop_id"])


def downgrade() -> None:
    op.drop_index(op.f(f"ix_{TABLE}_shop_id"), table_name=TABLE)
    op.drop_table(TABLE)
