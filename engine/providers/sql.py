"""SQLAlchemy helpers for plugins that own tables (and the engine's own tables use them).

A plugin's models live on the plugin's own ``MetaData`` -- never the engine's -- made
with :func:`plugin_metadata` (the engine's naming convention, so constraint names in
its migrations are predictable); instants are :class:`UTCDateTime` columns::

    from sqlalchemy.orm import DeclarativeBase
    from engine.providers.sql import UTCDateTime, plugin_metadata

    class Base(DeclarativeBase):
        metadata = plugin_metadata()
        type_annotation_map = {datetime: UTCDateTime()}

Foreign keys to the engine's ``shops.id`` / ``experts.id`` belong in the plugin's
migration (``ondelete="CASCADE"``, so uninstalling a shop or erasing an expert removes
the plugin's rows too), not on the models: the plugin's metadata does not know the
engine's tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData
from sqlalchemy.types import TypeDecorator

__all__ = ["NAMING", "UTCDateTime", "plugin_metadata"]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def plugin_metadata() -> MetaData:
    """A fresh ``MetaData`` with the engine's naming convention, for a plugin's tables."""
    return MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """An instant. Binds only aware datetimes; always loads aware UTC datetimes.

    PostgreSQL stores ``timestamptz``; SQLite stores naive UTC text, which sorts and
    compares correctly because every value is written in the same form.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime bound to a UTCDateTime column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
