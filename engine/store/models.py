"""The schema. Every tenant-owned row carries ``shop_id``; queries always filter on it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.store.types import UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(32)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Shop(Base):
    __tablename__ = "shops"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    # AES-256-GCM ciphertext (engine.crypto), bound to this row; never the plain token.
    access_token: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str | None] = mapped_column(Text)
    installed: Mapped[bool] = mapped_column(Boolean, default=True)
    installed_at: Mapped[datetime]
    uninstalled_at: Mapped[datetime | None]


class ShopSettings(Base):
    __tablename__ = "shop_settings"

    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"),
                                         primary_key=True)
    calendar_provider: Mapped[str] = mapped_column(String(64), default="local")
    video_provider: Mapped[str] = mapped_column(String(64), default="none")
    mail_provider: Mapped[str] = mapped_column(String(64), default="outbox")
    reminders: Mapped[list[Any]] = mapped_column(JSON, default=lambda: [1440, 60])


class Service(Base):
    __tablename__ = "services"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(255))
    duration_minutes: Mapped[int] = mapped_column(Integer)
    interval_minutes: Mapped[int | None] = mapped_column(Integer)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=0)
    max_days_ahead: Mapped[int] = mapped_column(Integer, default=60)
    product_id: Mapped[str | None] = mapped_column(String(128))
    variant_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    # Soft delete: bookings keep pointing at a deleted service.
    deleted_at: Mapped[datetime | None]


class Expert(Base):
    __tablename__ = "experts"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    # None: follows the shop's timezone, even when the shop's changes.
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class ExpertService(Base):
    __tablename__ = "expert_services"

    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"),
                                           primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"),
                                            primary_key=True, index=True)


class WeeklyHours(Base):
    """One wall-clock window of a weekday, in the expert's timezone. 1440 = "24:00"."""

    __tablename__ = "weekly_hours"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"),
                                           index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)


class DateOverride(Base):
    """The windows of one local date, replacing that weekday's; ``[]`` closes the day."""

    __tablename__ = "date_overrides"
    __table_args__ = (UniqueConstraint("expert_id", "date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    expert_id: Mapped[str] = mapped_column(ForeignKey("experts.id", ondelete="CASCADE"))
    date: Mapped[date] = mapped_column(Date)
    windows: Mapped[list[Any]] = mapped_column(JSON)  # [[start_minute, end_minute], ...]


