"""The money path: pending bookings lapse, bookings keep what their line paid, refund-log
entries of several kinds per line item.

* ``shop_settings.pending_hold_hours`` (default 48): how long an unpaid booking keeps its
  slot. Pending bookings made before this migration get their deadline now:
  ``updated_at`` + 48 hours.
* ``claims.line_price`` / ``line_quantity`` / ``currency`` (what the booked line paid, for
  the refund of a cancelled paid booking) and ``claims.cancelled_by``.
* ``refunds.kind`` (``line`` | ``extra`` | ``cancel``) and the unique key
  ``(shop_id, order_id, line_item_id, kind)`` instead of ``(shop_id, order_id,
  line_item_id)``: a line can be booked *and* have its extra units refunded, and still
  be decided once. Existing rows are ``line`` entries.
* The refund reason ``slot_taken`` becomes the contract's ``slot_unavailable``.

``claims`` gets plain ``ADD COLUMN`` (never a batch copy: on SQLite that would drop the
overlap triggers); ``refunds`` has no triggers and is rebuilt in batch mode on SQLite.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_UNIQUE = "uq_refunds_shop_id_order_id_line_item_id"
NEW_UNIQUE = "uq_refunds_shop_id_order_id_line_item_id_kind"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def upgrade() -> None:
    with op.batch_alter_table("shop_settings") as batch:
        batch.add_column(sa.Column("pending_hold_hours", sa.Integer(), nullable=False,
                                   server_default="48"))
    op.add_column("claims", sa.Column("line_price", sa.String(32), nullable=True))
    op.add_column("claims", sa.Column("line_quantity", sa.Integer(), nullable=True))
    op.add_column("claims", sa.Column("currency", sa.String(8), nullable=True))
    op.add_column("claims", sa.Column("cancelled_by", sa.String(16), nullable=True))
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="line"))
        batch.drop_constraint(OLD_UNIQUE, type_="unique")
        batch.create_unique_constraint(NEW_UNIQUE,
                                       ["shop_id", "order_id", "line_item_id", "kind"])

    bind = op.get_bind()
    claims = sa.table("claims", sa.column("id", sa.String), sa.column("status", sa.String),
                      sa.column("expires_at", UTCDateTime()),
                      sa.column("updated_at", UTCDateTime()))
    # Pending bookings of before: the default deadline, counted from their last change
    # (row by row, in Python: date arithmetic differs between the two databases).
    rows = bind.execute(sa.select(claims.c.id, claims.c.updated_at)
                        .where(claims.c.status == "pending",
                               claims.c.expires_at.is_(None))).all()
    for claim_id, updated_at in rows:
        base = _aware(updated_at) if updated_at is not None else datetime.now(UTC)
        bind.execute(sa.update(claims).where(claims.c.id == claim_id)
                     .values(expires_at=base + timedelta(hours=48)))
    refunds = sa.table("refunds", sa.column("reason", sa.String))
    bind.execute(sa.update(refunds).where(refunds.c.reason == "slot_taken")
                 .values(reason="slot_unavailable"))


def downgrade() -> None:
    bind = op.get_bind()
    refunds = sa.table("refunds", sa.column("kind", sa.String))
    # The old key allows one entry per line: keep the deciding ones.
    bind.execute(sa.delete(refunds).where(refunds.c.kind != "line"))
    with op.batch_alter_table("refunds") as batch:
        batch.drop_constraint(NEW_UNIQUE, type_="unique")
        batch.create_unique_constraint(OLD_UNIQUE, ["shop_id", "order_id", "line_item_id"])
        batch.drop_column("kind")
    for column in ("cancelled_by", "currency", "line_quantity", "line_price"):
        # Plain DROP COLUMN (SQLite >= 3.35): a batch copy would drop the overlap triggers.
        op.execute(f"ALTER TABLE claims DROP COLUMN {column}")
    with op.batch_alter_table("shop_settings") as batch:
        batch.drop_column("pending_hold_hours")
