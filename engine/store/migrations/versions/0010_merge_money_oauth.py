"""Merge the feature heads of the money path (0007) and the browser-bound OAuth flow
(0009) into one head for later migrations to build on. No schema change.

Revision ID: 0010
Revises: 0007, 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

revision = "0010"
down_revision = ("0007", "0009")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
