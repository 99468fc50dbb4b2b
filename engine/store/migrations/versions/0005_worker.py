"""Worker: outbox leases owned by a task, per-step done-markers, reminder attempts.

* ``outbox.lease_owner``: who holds ``locked_until`` (a Celery task id, or an embedded
  worker's token). A redelivered task carries the same id, so it takes its own lease
  back at once instead of waiting for it to run out.
* ``outbox_steps``: one row per step of one outbox item (meeting, event, customer mail,
  expert mail...). A step is recorded right after it succeeds; a mail step is claimed
  (the row inserted as ``sending``) *before* the message goes out, so a redelivered
  task never sends it twice.
* ``reminders.attempts``: transient send failures put a reminder back a few times.

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("lease_owner", sa.String(64), nullable=True))
    op.add_column("reminders", sa.Column("attempts", sa.Integer(), nullable=False,
                                         server_default="0"))
    op.create_table(
        "outbox_steps",
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], ondelete="CASCADE",
                                name=op.f("fk_outbox_steps_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("outbox_id", "step", name=op.f("pk_outbox_steps")),
    )
    # Mail steps stuck in "sending" (a worker died mid-send) are found by this sweep.
    op.create_index("ix_outbox_steps_sending", "outbox_steps", ["updated_at"],
                    postgresql_where=sa.text("status = 'sending'"),
                    sqlite_where=sa.text("status = 'sending'"))
    # Reminders stuck in "sending", for the same sweep.
    op.create_index("ix_reminders_sending", "reminders", ["claimed_at"],
                    postgresql_where=sa.text("status = 'sending'"),
                    sqlite_where=sa.text("status = 'sending'"))


def downgrade() -> None:
    op.drop_index("ix_reminders_sending", table_name="reminders")
    op.drop_index("ix_outbox_steps_sending", table_name="outbox_steps")
    op.drop_table("outbox_steps")
    with op.batch_alter_table("reminders") as batch:
        batch.drop_column("attempts")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("lease_owner")
