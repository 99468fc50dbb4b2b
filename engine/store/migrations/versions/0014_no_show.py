"""Attendance: a merchant marks a past booking as a no-show.

``claims.no_show_at`` is when the merchant marked it (NULL: attended or not marked).
The booking's ``status`` stays ``confirmed`` (the contract's statuses are unchanged);
the mark is reported beside it as ``no_show``. Plain ``ADD COLUMN`` on ``claims``: a
batch copy on SQLite would drop the capacity triggers of migration 0013.

Revision ID: 0014
Revises: 0013
Create Date: 2027-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("claims", sa.Column("no_show_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("claims", "no_show_at")
