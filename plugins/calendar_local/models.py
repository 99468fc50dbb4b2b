"""The local calendar's own tables, on its own metadata (never the engine's).

Created by the plugin's Alembic branch (``migrations/``, see :func:`locations`). Foreign
keys to ``shops`` and ``experts`` (``ON DELETE CASCADE``) are in the migration, not
here: this metadata does not know the engine's tables.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.providers.sql import UTCDateTime, plugin_metadata

ID = String(32)


class Base(DeclarativeBase):
    metadata = plugin_metadata()
    type_annotation_map = {datetime: UTCDateTime()}


class IcsFeed(Base):
    """An iCalendar feed (URL or uploaded file) whose events block an expert's time."""

    __tablename__ = "ics_feeds"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ID, index=True)
    expert_id: Mapped[str] = mapped_column(ID)
    name: Mapped[str] = mapped_column(String(255))
    # Private feed URLs embed a secret: encrypted, aad ics_feed:<id>:url. None = uploaded.
    url: Mapped[str | None] = mapped_column(Text)
    events: Mapped[int] = mapped_column(Integer, default=0)
    last_fetched_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


class LocalBusyBlock(Base):
    """Time an expert is not available, kept in the database (entered or imported)."""

    __tablename__ = "local_busy_blocks"
    __table_args__ = (Index("ix_local_busy_blocks_expert_id_start", "expert_id", "start"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ID)
    expert_id: Mapped[str] = mapped_column(ID)
    start: Mapped[datetime]
    end: Mapped[datetime]
    summary: Mapped[str | None] = mapped_column(String(255))
    feed_id: Mapped[str | None] = mapped_column(ID, index=True)
    created_at: Mapped[datetime]


class LocalCalendarEvent(Base):
    """A booking's event in the built-in local calendar (one per booking)."""

    __tablename__ = "local_calendar_events"

    booking_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    shop_id: Mapped[str] = mapped_column(ID, index=True)
    expert_id: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(512))
    start: Mapped[datetime]
    end: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    meeting_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


def feed_url_aad(feed_id: str) -> str:
    """What a feed's encrypted URL is bound to (rotation re-encrypts it with the same)."""
    return f"ics_feed:{feed_id}:url"
