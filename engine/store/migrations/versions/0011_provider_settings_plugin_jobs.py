"""Per-shop provider settings (``Provider.settings``) and plugin job run claims.

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_settings",
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_provider_settings_shop_id_shops")),
        sa.PrimaryKeyConstraint("shop_id", "kind", "provider",
                                name=op.f("pk_provider_settings")),
    )
    op.create_table(
        "plugin_job_runs",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_plugin_job_runs")),
    )


def downgrade() -> None:
    op.drop_table("plugin_job_runs")
    op.drop_table("provider_settings")
