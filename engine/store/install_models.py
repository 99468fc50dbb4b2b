"""Models of the Shopify install: the one-time OAuth ``state`` values.

A state is stored only as its SHA-256 (a database reader cannot replay it), bound to the
shop it was issued for, and consumed by one conditional update: two callbacks racing
with the same state cannot both win.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from engine.store.base import Base


class OAuthState(Base):
    __tablename__ = "oauth_states"

    # hex SHA-256 of the state value sent to Shopify.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    shop_domain: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    consumed_at: Mapped[datetime | None]
