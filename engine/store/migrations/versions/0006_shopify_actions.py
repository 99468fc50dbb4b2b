"""Merge the feature heads; Shopify order actions: auto-refund setting, refund outcome.

Revision ID: 0006
Revises: 0003, 0004, 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = ("0003", "0004", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shop_settings") as batch:
        batch.add_column(sa.Column("auto_refund", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("quantity", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("shopify_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("shopify_refund_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("shopify_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        for column in ("shopify_error", "shopify_refund_id", "shopify_status", "quantity"):
            batch.drop_column(column)
    with op.batch_alter_table("shop_settings") as batch:
        batch.drop_column("auto_refund")
