"""Provider OAuth bound to the browser that started it, started by a one-time ticket.

``provider_oauth_states.browser_hash``: the SHA-256 of a random nonce the start page
sets as an HttpOnly cookie; the callback must present it. ``provider_oauth_starts``:
one-time, short-lived start tickets (stored as SHA-256), so the browser opens a start
URL that carries no session token.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0009"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Flows begun before this revision are not bound to a browser: drop them (they are
    # short-lived anyway); the merchant simply starts again.
    op.execute(sa.text("DELETE FROM provider_oauth_states"))
    with op.batch_alter_table("provider_oauth_states") as batch:
        batch.add_column(sa.Column("browser_hash", sa.String(64), nullable=False,
                                   server_default=""))
    op.create_table(
        "provider_oauth_starts",
        sa.Column("ticket_hash", sa.String(64), nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_provider_oauth_starts_shop_id_shops")),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_provider_oauth_starts")),
    )
    op.create_index(op.f("ix_provider_oauth_starts_expires_at"), "provider_oauth_starts",
                    ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_provider_oauth_starts_expires_at"),
                  table_name="provider_oauth_starts")
    op.drop_table("provider_oauth_starts")
    with op.batch_alter_table("provider_oauth_states") as batch:
        batch.drop_column("browser_hash")
