"""One OAuth state mechanism: provider sign-in states move into ``oauth_states``.

``oauth_states`` (the Shopify install's states) gains ``purpose`` ("shopify_install", or
the provider connector's name), ``shop_id`` (provider states; FK to shops), ``flow`` (the
encrypted flow data of provider states, aad ``oauth_state:<id>:flow`` as before) and
``browser_hash``; ``shop_domain`` becomes nullable (provider states have none).
``provider_oauth_states`` is dropped.

Data: pending Shopify installs are kept (they become ``purpose = 'shopify_install'``).
In-flight provider sign-ins are DROPPED, not copied: they live ten minutes at most and
the merchant simply clicks Connect again. (Copying would also work, but a flow is bound
to its browser and its row's aad; dropping keeps this revision trivially correct.) The
downgrade likewise drops pending provider sign-ins and keeps install states.

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INSTALL = "shopify_install"


def upgrade() -> None:
    # In-flight provider sign-ins are dropped (see the docstring).
    op.drop_table("provider_oauth_states")
    with op.batch_alter_table("oauth_states") as batch:
        # The server default fills the existing (install) rows; removed below, so every
        # new row must say its purpose.
        batch.add_column(sa.Column("purpose", sa.String(64), nullable=False,
                                   server_default=INSTALL))
        batch.add_column(sa.Column("shop_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("flow", sa.Text(), nullable=True))
        batch.add_column(sa.Column("browser_hash", sa.String(64), nullable=False,
                                   server_default=""))
        batch.alter_column("shop_domain", existing_type=sa.String(255), nullable=True)
        batch.create_foreign_key(op.f("fk_oauth_states_shop_id_shops"), "shops",
                                 ["shop_id"], ["id"], ondelete="CASCADE")
    with op.batch_alter_table("oauth_states") as batch:
        batch.alter_column("purpose", existing_type=sa.String(64), existing_nullable=False,
                           server_default=None)


def downgrade() -> None:
    # Pending provider sign-ins are dropped; install states are kept.
    op.execute(sa.text("DELETE FROM oauth_states WHERE purpose <> :p").bindparams(p=INSTALL))
    with op.batch_alter_table("oauth_states") as batch:
        batch.drop_constraint(op.f("fk_oauth_states_shop_id_shops"), type_="foreignkey")
        batch.drop_column("browser_hash")
        batch.drop_column("flow")
        batch.drop_column("shop_id")
        batch.drop_column("purpose")
        batch.alter_column("shop_domain", existing_type=sa.String(255), nullable=False)
    op.create_table(
        "provider_oauth_states",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("flow", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("browser_hash", sa.String(64), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_provider_oauth_states_shop_id_shops")),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_provider_oauth_states")),
    )
