"""Shopify install: one-time OAuth states; expiring offline tokens on shops.

Shops gain the access token's expiry, the (encrypted, single-use) refresh token and its
expiry, the re-authorization flag the merchant sees, and the refresh lease that keeps
two refreshers from spending one refresh token.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

SHOP_COLUMNS = (
    ("access_token_expires_at", UTCDateTime()),
    ("refresh_token", sa.Text()),
    ("refresh_token_expires_at", UTCDateTime()),
    ("auth_error", sa.Text()),
    ("auth_error_at", UTCDateTime()),
    ("token_lease", sa.String(32)),
    ("token_lease_until", UTCDateTime()),
)


def upgrade() -> None:
    # Nullable columns: a plain ADD COLUMN on both SQLite and PostgreSQL.
    for name, type_ in SHOP_COLUMNS:
        op.add_column("shops", sa.Column(name, type_, nullable=True))
    op.create_table(
        "oauth_states",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("shop_domain", sa.String(255), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("consumed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_states")),
    )
    op.create_index(op.f("ix_oauth_states_expires_at"), "oauth_states", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_oauth_states_expires_at"), table_name="oauth_states")
    op.drop_table("oauth_states")
    with op.batch_alter_table("shops") as batch:
        for name, _ in reversed(SHOP_COLUMNS):
            batch.drop_column(name)
